"""Reward models (a real tiny checkpoint on disk) and LLM judges against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from posttrain.errors import UserError
from posttrain.rewards import make_reward
from posttrain.rewards.judge import HFBackend, HttpBackend, JudgeError, PairwiseJudge, PointwiseJudge
from posttrain.rewards.reward_model import build_tiny_reward_model


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("rm"), seed=1)


def test_reward_model_scores_match_an_unbatched_forward(tiny_rm: Path) -> None:
    prompts = ["What is 2+2?", "Say hi", "x"]
    completions = ["4", "hello there, friend " * 5, "\x00\xff binary"]
    batched = make_reward("reward_model", path=str(tiny_rm), batch_size=3)(prompts, completions)
    single = make_reward("reward_model", path=str(tiny_rm), batch_size=1)(prompts, completions)
    tokenizer = AutoTokenizer.from_pretrained(tiny_rm)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm).eval()
    expected = []
    for prompt, completion in zip(prompts, completions, strict=True):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], tokenize=False
        )
        with torch.no_grad():
            expected.append(model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item())
    assert batched.scores == pytest.approx(expected, abs=1e-4)
    assert single.scores == pytest.approx(expected, abs=1e-4)
    assert len(set(batched.scores)) == 3


def test_reward_model_rejects_multi_label_checkpoints(tiny_rm: Path, tmp_path: Path) -> None:
    config = LlamaConfig.from_pretrained(tiny_rm)
    config.num_labels = 2
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_rm).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="num_labels=2"):
        make_reward("reward_model", path=str(tmp_path))
    with pytest.raises(UserError):
        make_reward("reward_model", path=str(tmp_path / "missing"))


def test_behavioural_gate_with_a_real_reward_model(tiny_rm: Path) -> None:
    rm = make_reward("reward_model", path=str(tiny_rm))
    completions = ["all lowercase", "Has Capitals"]
    gated = make_reward("gated", reward=rm, gate={"name": "ifeval"})(
        ["", ""], completions, constraints=[{"type": "lowercase"}]
    )
    assert gated.scores == [rm([""], completions[:1]).scores[0], 0.0]


class _Server:
    """A real OpenAI-compatible endpoint on 127.0.0.1 whose replies come from `answer(content) -> (code, body)`."""

    def __init__(self, answer: Callable[[str], tuple[int, str]]) -> None:
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                code, reply = answer(body["messages"][-1]["content"])
                payload = (
                    reply
                    if code != 200 or reply.startswith("RAW:")
                    else json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                )
                data = payload.removeprefix("RAW:").encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str], tuple[int, str]]], _Server]]:
    servers: list[_Server] = []

    def start(answer: Callable[[str], tuple[int, str]]) -> _Server:
        servers.append(_Server(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _rate(content: str) -> tuple[int, str]:
    response = content.split("[Response]\n", 1)[1]
    if response.startswith("GOOD"):
        return 200, "Clear and correct.\nScore: 9"
    if response.startswith("BAD"):
        return 200, "Unhelpful. [[2]]"
    return 200, "I cannot decide."


def test_pointwise_judge_over_http(serve: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "k-123")
    server = serve(_rate)
    judge = make_reward("judge", base_url=server.url + "/v1", api_key_env="JUDGE_KEY", rubric="Be strict.")
    out = judge(["q1", "q2", "q3"], ["GOOD answer", "BAD answer", "WEIRD"])
    assert out.scores == pytest.approx([8 / 9, 1 / 9, 0.0])
    assert out.metrics["judge/failures"] == 1.0 and out.metrics["judge/rating"] == pytest.approx(5.5)
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in server.requests} == {"Bearer k-123"}
    assert all("Be strict." in r["body"]["messages"][0]["content"] for r in server.requests)


def test_http_backend_retries_server_errors_but_not_client_errors(serve: Callable) -> None:
    calls = {"n": 0}

    def flaky(content: str) -> tuple[int, str]:
        calls["n"] += 1
        return (503, "busy") if calls["n"] <= 2 else (200, "Score: 7")

    server = serve(flaky)
    assert HttpBackend(server.url, retries=3, backoff_s=0.01).complete([{"role": "user", "content": "x"}]) == "Score: 7"
    assert calls["n"] == 3
    rejecting = serve(lambda content: (400, "bad request"))
    with pytest.raises(JudgeError, match="HTTP 400"):
        HttpBackend(rejecting.url, retries=3, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    assert len(rejecting.requests) == 1


def test_http_backend_times_out_and_survives_malformed_replies(serve: Callable) -> None:
    slow = serve(lambda content: (time.sleep(1.0), (200, "Score: 5"))[1])
    with pytest.raises(JudgeError, match="timed out"):
        HttpBackend(slow.url, timeout_s=0.2, retries=1, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    garbled = serve(lambda content: (200, 'RAW:{"choices": []}'))
    judge = PointwiseJudge(HttpBackend(garbled.url, retries=0), failure_score=-1.0)
    assert judge(["q"], ["a"]).scores == [-1.0]
    unreachable = PointwiseJudge(HttpBackend("http://127.0.0.1:9", retries=0, timeout_s=1))
    assert unreachable(["q"], ["a"]).metrics["judge/failures"] == 1.0


def test_pairwise_judge_cancels_position_bias(serve: Callable) -> None:
    def prefer(content: str) -> tuple[int, str]:
        a = content.split("[Response A]\n", 1)[1].split("[Response B]", 1)[0]
        b = content.split("[Response B]\n", 1)[1]
        if "GOOD" in a:
            return 200, "Preferred: A"
        if "GOOD" in b:
            return 200, "Response B is better"
        return 200, "[[B]]"  # a judge that always favours the second slot when it cannot tell

    server = serve(prefer)
    judge = PairwiseJudge(HttpBackend(server.url), reference_column="reference")
    out = judge(["q", "q"], ["GOOD one", "so-so"], reference=["plain", "plain"])
    assert out.scores == [1.0, 0.5]
    assert len(server.requests) == 4
    unswapped = PairwiseJudge(HttpBackend(server.url), swap=False)(["q"], ["so-so"], reference="plain")
    assert unswapped.scores == [0.0]


def test_judge_with_a_real_tiny_model_locally_and_behind_http(serve: Callable) -> None:
    backend = HFBackend("zaya-tiny", max_new_tokens=6)
    local = PointwiseJudge(backend)(["q", "r"], ["a", ""])
    assert len(local.scores) == 2 and all(0.0 <= s <= 1.0 for s in local.scores)
    server = serve(lambda content: (200, backend.complete([{"role": "user", "content": content}])))
    remote = PointwiseJudge(HttpBackend(server.url))(["q", "r"], ["a", ""])
    assert remote.scores == local.scores  # greedy decoding: the same model gives the same verdicts either way
    assert len(server.requests) == 2
