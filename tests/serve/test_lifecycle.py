"""The server process: bad command lines, SIGTERM draining, disconnecting clients, and Ray workers."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx2
import pytest

from tests.serve.conftest import chat_prompt, chat_text, forward_logprobs, greedy, joined, start_server

POLL_DEADLINE_S = 180  # generous: the machine is shared


def wait_for(condition, what: str):
    deadline = time.monotonic() + POLL_DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["serve.port=70000"], "serve.port must be in [0, 65535]"),
        (["serve.prot=1"], "did you mean 'serve.port'"),
        (["serve.num_workers=0"], "serve.num_workers must be >= 1"),
        (["model.path=/no/such/model"], "is neither a preset"),
    ],
)
def test_bad_command_lines_fail_with_one_error_line(cli, overrides, message):
    result = cli("serve", *overrides, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1


def test_a_port_in_use_fails_before_the_model_loads(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", f"serve.port={port}", timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "in use" in result.stderr


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path, tiny):
    model, tokenizer = tiny
    server = start_server(log_dir=tmp_path)
    body = {"model": server.model, "messages": [{"role": "user", "content": "Count."}], "max_tokens": 120}
    answer: dict = {}

    def ask():
        answer["response"] = httpx2.post(f"{server.url}/chat/completions", json=body | {"temperature": 0}, timeout=600)

    try:
        thread = threading.Thread(target=ask)
        thread.start()
        wait_for(lambda: server.health()["in_flight"] == 1, "the request to be in flight")
        server.process.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                httpx2.get(f"{server.root}/health", timeout=5)
            except httpx2.TransportError:
                return True
            return False

        wait_for(refused, "new connections to be refused")
        thread.join(timeout=600)
        assert server.process.wait(timeout=600) == 0, server.stderr()
    finally:
        server.stop(signal.SIGKILL)
    response = answer["response"]
    assert response.status_code == 200
    message = response.json()["choices"][0]["message"]
    expected = greedy(model, tokenizer, chat_prompt(tokenizer, "Count."), 120)
    assert joined(message["reasoning_content"], message["content"]) == chat_text(tokenizer, expected)  # whole
    assert "Traceback" not in server.stderr()


def test_a_client_that_disconnects_mid_stream_frees_its_slot(tmp_path):
    server = start_server("serve.max_concurrent_requests=1", log_dir=tmp_path)
    try:
        long = {"model": server.model, "messages": [{"role": "user", "content": "Go on."}], "max_tokens": 1500}
        with httpx2.stream("POST", f"{server.url}/chat/completions", json=long | {"stream": True}, timeout=600) as s:
            lines = s.iter_lines()  # kept referenced: a closed iterator would close the connection early
            first = next(lines)
            assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
            assert server.health()["in_flight"] == 1
            # The only slot is taken: another request is turned away, not queued forever.
            short = {"model": server.model, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2}
            busy = httpx2.post(f"{server.url}/chat/completions", json=short, timeout=600)
            assert busy.status_code == 429 and busy.json()["error"]["type"] == "rate_limit_error"
        # Leaving the block closed the connection mid-stream.
        health = wait_for(lambda: (h := server.health())["in_flight"] == 0 and h, "the slot to be freed")
        assert health["disconnects"] == 1
        after = httpx2.post(f"{server.url}/chat/completions", json=short, timeout=600)
        assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] >= 1
    finally:
        assert server.stop() == 0, server.stderr()


def test_ray_workers_serve_generation_and_scoring(tmp_path, tiny):
    """serve.num_workers=2: requests go to two Ray rollout workers (chunks of rollout.batch_size=2)."""
    model, tokenizer = tiny
    server = start_server("serve.num_workers=2", "ray.num_cpus=3", "rollout.batch_size=2", log_dir=tmp_path)
    try:
        questions = [f"{i}+{i}=?" for i in range(4)]
        replies = [None] * len(questions)

        def ask(i: int) -> None:
            body = {"model": server.model, "messages": [{"role": "user", "content": questions[i]}], "max_tokens": 6}
            replies[i] = httpx2.post(f"{server.url}/chat/completions", json=body | {"temperature": 0}, timeout=600)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        for question, reply in zip(questions, replies, strict=True):
            message = reply.json()["choices"][0]["message"]
            expected = greedy(model, tokenizer, chat_prompt(tokenizer, question), 6)
            assert joined(message["reasoning_content"], message["content"]) == chat_text(tokenizer, expected)
        ids = tokenizer("abcdef")["input_ids"]
        body = {"model": server.model, "prompt": [ids], "max_tokens": 0, "echo": True, "logprobs": 1}
        scored = httpx2.post(f"{server.url}/completions", json=body, timeout=600).json()
        table = forward_logprobs(model, ids)
        expected = [table[t - 1, ids[t]].item() for t in range(1, len(ids))]
        first, *rest = scored["choices"][0]["logprobs"]["token_logprobs"]
        assert first is None and rest == pytest.approx(expected, abs=1e-5)
    finally:
        assert server.stop() == 0, server.stderr()
