"""64 concurrent mixed requests on loopback: none lost, none mixed up, p50/p95 latency printed.

Each request asks about its own prompt. Chat, completions and streamed chat return the log-prob of every
token they generated; a forward pass over *that request's* prompt plus the returned tokens must reproduce
them, which a completion that belonged to another prompt cannot do. RSA requests return their final
aggregation prompt, which must restate their own problem.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from tests.serve.conftest import chat_prompt, chat_text, joined, teacher_forced

REQUESTS = 64
KINDS = ("chat", "completion", "stream", "rsa")


def question(i: int) -> str:
    return f"Request {i}: what is {i}+{i * 7}?"


async def one(client, model: str, i: int) -> tuple[str, int, dict, float]:
    kind, start = KINDS[i % len(KINDS)], time.perf_counter()
    messages = [{"role": "user", "content": question(i)}]
    if kind == "chat":
        reply = await client.chat.completions.create(
            model=model, messages=messages, max_tokens=8, logprobs=True, seed=i
        )
        content = reply.choices[0].logprobs.content
        message = reply.choices[0].message
        reasoning = (message.model_extra or {}).get("reasoning_content")
        result = {"tokens": [c.token for c in content], "logprobs": [c.logprob for c in content],
                  "text": joined(reasoning, message.content)}  # fmt: skip
    elif kind == "completion":
        reply = await client.completions.create(model=model, prompt=question(i), max_tokens=8, logprobs=0, seed=i)
        logprobs = reply.choices[0].logprobs
        result = {"tokens": logprobs.tokens, "logprobs": logprobs.token_logprobs, "text": reply.choices[0].text}
    elif kind == "stream":
        stream = await client.chat.completions.create(
            model=model, messages=messages, max_tokens=8, logprobs=True, stream=True
        )
        tokens, logprobs, text, reasoning = [], [], "", None
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            text += delta.content or ""
            if (delta.model_extra or {}).get("reasoning_content"):
                reasoning = (reasoning or "") + delta.model_extra["reasoning_content"]
            for entry in (chunk.choices[0].logprobs.content if chunk.choices[0].logprobs else None) or []:
                tokens.append(entry.token)
                logprobs.append(entry.logprob)
        result = {"tokens": tokens, "logprobs": logprobs, "text": joined(reasoning, text)}
    else:
        reply = await client.chat.completions.create(
            model=model,
            messages=messages,
            extra_body={"rsa": {"N": 2, "C": 1, "T": 1, "beta": 4, "tau": 2}, "return_aggregation_prompt": True},
        )
        result = {"aggregation": reply.model_extra.get("aggregation_prompt"), "usage": reply.usage.completion_tokens,
                  "per_round": reply.model_extra["rsa_metadata"]["completion_tokens_per_round"]}  # fmt: skip
    return kind, i, result, time.perf_counter() - start


def test_64_concurrent_mixed_requests_each_answer_their_own_prompt(server, tiny, capsys):
    import openai

    model, tokenizer = tiny

    async def main():
        client = openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
        try:
            return await asyncio.gather(*(one(client, server.model, i) for i in range(REQUESTS)))
        finally:
            await client.close()

    results = asyncio.run(main())
    assert sorted(i for _, i, _, _ in results) == list(range(REQUESTS))  # none lost
    for kind, i, result, _ in results:
        if kind == "rsa":
            # The aggregation prompt of T = 1, C = 1 holds its own problem and one tail.
            (prompt,) = result["aggregation"]
            assert prompt["content"].startswith(question(i) + "\n"), (i, prompt)
            assert result["usage"] == sum(result["per_round"]) and len(result["per_round"]) == 2
            continue
        ids = [tokenizer.convert_tokens_to_ids(t) for t in result["tokens"]]
        assert 1 <= len(ids) <= 8, (kind, i)
        text = tokenizer.decode(ids, skip_special_tokens=True) if kind == "completion" else chat_text(tokenizer, ids)
        assert text == result["text"], (kind, i)
        prompt = tokenizer(question(i))["input_ids"] if kind == "completion" else chat_prompt(tokenizer, question(i))
        assert result["logprobs"] == pytest.approx(teacher_forced(model, prompt, ids), abs=5e-4), (kind, i)
    health = server.health()
    assert health["in_flight"] == 0 and health["queued"] == 0
    assert health["largest_batch"] > 1  # concurrent requests shared engine calls
    latencies = sorted(latency for *_, latency in results)
    p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]
    with capsys.disabled():
        print(f"\n{REQUESTS} concurrent mixed requests: p50 {p50:.2f} s, p95 {p95:.2f} s, "
              f"largest batch {health['largest_batch']}, engine calls {health['engine_calls']}")  # fmt: skip
