"""The real `openai` client against a live `posttrain serve` (zaya-tiny, random weights: protocol, not quality)."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from tests.serve.conftest import chat_prompt, chat_text, forward_logprobs, greedy, joined, teacher_forced

QUESTION = "What is 12+30?"


def test_models_list_names_the_served_model(client, server):
    models = client.models.list().data
    assert [m.id for m in models] == [server.model] == ["zaya-tiny"]


def test_greedy_chat_is_the_models_own_argmax_and_usage_counts_tokens(client, server, tiny):
    model, tokenizer = tiny
    reply = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": QUESTION}], max_tokens=8, temperature=0
    )
    prompt = chat_prompt(tokenizer, QUESTION)
    expected = greedy(model, tokenizer, prompt, 8)
    assert reply.object == "chat.completion" and reply.id and reply.created and reply.model == server.model
    choice = reply.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    reasoning = (choice.message.model_extra or {}).get("reasoning_content")
    assert joined(reasoning, choice.message.content) == chat_text(tokenizer, expected)
    assert choice.finish_reason == ("stop" if expected[-1] == tokenizer.eos_token_id else "length")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (len(prompt), len(expected))
    assert reply.usage.total_tokens == len(prompt) + len(expected)


def test_streamed_chat_deltas_add_up_to_the_answer_and_end_with_done(client, server, tiny):
    model, tokenizer = tiny
    stream = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    content = "".join(d.content or "" for d in deltas)
    reasoning = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
    reasoning = "".join(r for r in reasoning if r) if any(reasoning) else None
    expected = greedy(model, tokenizer, chat_prompt(tokenizer, QUESTION), 8)
    assert joined(reasoning, content) == chat_text(tokenizer, expected)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == len(expected)
    # On the wire: SSE `data:` events, the last one `[DONE]`.
    body = {"model": server.model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 3, "stream": True}
    with httpx2.stream("POST", f"{server.url}/chat/completions", json=body, timeout=300) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert all(json.loads(e[6:])["object"] == "chat.completion.chunk" for e in events[:-1])


def test_completion_logprobs_are_the_models_teacher_forced_logprobs(client, server, tiny):
    model, tokenizer = tiny
    prompt_text = "12+30="
    reply = client.completions.create(
        model=server.model, prompt=prompt_text, max_tokens=6, temperature=1.0, seed=3, logprobs=2, n=2
    )
    prompt = tokenizer(prompt_text)["input_ids"]
    assert len(reply.choices) == 2 and [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        tokens = [tokenizer.convert_tokens_to_ids(t) for t in choice.logprobs.tokens]
        assert tokenizer.decode(tokens, skip_special_tokens=True) == choice.text
        oracle = teacher_forced(model, prompt, tokens)
        assert choice.logprobs.token_logprobs == pytest.approx(oracle, abs=1e-4)
        table = forward_logprobs(model, prompt + tokens)
        for j, top in enumerate(choice.logprobs.top_logprobs):
            best = table[len(prompt) - 1 + j].topk(2)
            assert sorted(top.values(), reverse=True) == pytest.approx(best.values.tolist(), abs=1e-4)


def test_chat_logprobs_with_alternatives(client, server, tiny):
    model, tokenizer = tiny
    reply = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply.choices[0].logprobs.content
    tokens = [tokenizer.convert_tokens_to_ids(entry.token) for entry in content]
    oracle = teacher_forced(model, chat_prompt(tokenizer, QUESTION), tokens)
    assert [entry.logprob for entry in content] == pytest.approx(oracle, abs=1e-4)
    for entry in content:  # greedy: the chosen token is the most likely alternative
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
        assert entry.bytes == list(entry.token.encode())


def test_rsa_through_extra_body(client, server):
    reply = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"rsa": {"N": 4, "C": 2, "T": 1, "beta": 6, "tau": 3}},
    )
    meta = reply.model_extra["rsa_metadata"]
    assert (meta["rsa_iterations"], meta["rsa_n"], meta["rsa_k"], meta["short_resp_len"]) == (1, 4, 2, 6)
    per_round = meta["completion_tokens_per_round"]
    assert len(per_round) == 2 and all(1 <= total <= 4 * 6 for total in per_round)  # N chains of at most β
    assert reply.usage.completion_tokens == sum(per_round)  # every round counts
    assert meta["rsa_token_count_history"] == [total / 4 for total in per_round]
    assert len(reply.choices) == 1
    if meta["majority_answer"] is not None:
        assert meta["votes"][meta["majority_answer"]] == max(meta["votes"].values())


def test_zyphra_flat_keys_are_understood(client, server):
    reply = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={
            "rsa_n": 3, "rsa_k": 2, "rsa_t": 2, "short_resp_len": 5, "tail_window_len": 4,
            "final_temperature": 0.0, "final_top_k": 5, "rsa_final_n": 2,
            "return_rsa_metadata": True, "return_aggregation_prompt": True,
        },
    )  # fmt: skip
    meta = reply.model_extra["rsa_metadata"]
    assert (meta["rsa_iterations"], meta["rsa_n"], meta["rsa_k"], meta["tail_window_len"]) == (2, 3, 2, 4)
    assert len(meta["completion_tokens_per_round"]) == 3
    assert len(reply.choices) == 2
    (prompt,) = reply.model_extra["aggregation_prompt"]
    assert prompt["role"] == "user" and prompt["content"].startswith(QUESTION)
    assert "Attempt 2:" in prompt["content"] and "Attempt 3:" not in prompt["content"]  # C = 2 tails
    plain = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": QUESTION}], max_tokens=2, extra_body={"rsa_t": 0}
    )
    assert "rsa_metadata" not in (plain.model_extra or {})  # rsa_t=0 passes through, as in Zyphra's proxy


def test_tokenize_detokenize_and_health(server, tiny):
    _, tokenizer = tiny
    tokens = httpx2.post(f"{server.root}/tokenize", json={"prompt": "abc"}, timeout=60).json()
    assert tokens["tokens"] == tokenizer("abc")["input_ids"] and tokens["count"] == 3
    assert tokens["max_model_len"] == 2048
    chat = httpx2.post(f"{server.root}/tokenize", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=60)
    assert chat.json()["tokens"] == chat_prompt(tokenizer, "hi")
    text = httpx2.post(f"{server.root}/detokenize", json={"tokens": tokens["tokens"]}, timeout=60).json()
    assert text == {"prompt": "abc"}
    assert server.health()["status"] == "ok"


LONG = "x" * 2100  # zaya-tiny's context is 2048 tokens, one per character


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
         "max_tokens"),
        ("completions", {"model": "zaya-tiny", "prompt": "hi", "max_tokens": -3}, "max_tokens"),
        ("completions", {"model": "zaya-tiny", "prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": LONG}]}, "messages"),
        ("completions", {"model": "zaya-tiny", "prompt": "x" * 2040, "max_tokens": 20}, "max_tokens"),
        ("completions", {"model": "zaya-tiny", "prompt": [[1, 2, 10**6]]}, "prompt"),
        ("completions", {"model": "zaya-tiny", "prompt": ""}, "prompt"),
        ("completions", {"model": "zaya-tiny", "prompt": []}, "prompt"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "rsa": {"N": 2, "C": 3}}, "rsa.C"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "rsa": {"beta": 8, "tau": 9}}, "rsa.tau"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "rsa_n": 4, "stream": True}, "stream"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "rsa": {"beta": 2000}}, "messages"),  # RSA prompts + β exceed the context
        ("chat/completions", {"model": "zaya-tiny", "messages": [], "max_tokens": 2}, "messages"),
        ("chat/completions", {"model": "zaya-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "presence_penalty": 0.5}, "presence_penalty"),
        ("completions", {"model": "zaya-tiny", "prompt": "hi", "rsa": {"N": 2}}, "rsa"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_with_an_openai_error(server, path, body, param):
    response = httpx2.post(f"{server.url}/{path}", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_malformed_json_and_the_openai_client_see_400s(server, client):
    response = httpx2.post(
        f"{server.url}/chat/completions", content=b'{"model": "zaya-tiny", "messages": [', timeout=60,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param"} and "JSON" in error["message"]
    with pytest.raises(openai.BadRequestError, match="not served here"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])


def test_a_seeded_request_gets_the_same_samples_alone_and_in_a_busy_batch(client, server):
    """Each choice draws from its own stream, seeded by (seed, choice): other requests sharing the engine call
    (different prompts, seeds and lengths) change nothing; another seed changes the samples."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(prompt: str, seed: int) -> list[str]:
        reply = client.completions.create(
            model=server.model, prompt=prompt, max_tokens=8, temperature=1.0, seed=seed, n=2
        )
        return [c.text for c in reply.choices]

    alone = ask("12+30=", 7)
    with ThreadPoolExecutor(8) as pool:
        crowd = [pool.submit(ask, f"{i}+{i}=", 100 + i) for i in range(7)]
        mine = pool.submit(ask, "12+30=", 7)
        [job.result() for job in crowd]
    assert mine.result() == alone and alone[0] != alone[1]
    assert ask("12+30=", 8) != alone
