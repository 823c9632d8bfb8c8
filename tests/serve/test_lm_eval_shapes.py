"""The requests lm-eval's `local-completions` model sends, parsed the way it parses the answers.

Log-likelihood: `echo=true, logprobs=1, max_tokens=1, temperature=0`, with context + continuation as one
(token-id or text) prompt per choice; lm-eval sums `token_logprobs[ctxlen:-1]` and calls a continuation
greedy when each of its tokens is the top alternative. The sums must equal the model's own log-probs,
computed here with one forward pass and `log_softmax`, to 1e-5.
"""

from __future__ import annotations

import httpx2
import pytest

from tests.serve.conftest import forward_logprobs, greedy

PAIRS = [("Question: 2+2=", "4"), ("The capital of France is", " Paris"), ("abc", "defgh")]


def post(server, body: dict) -> dict:
    response = httpx2.post(f"{server.url}/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def oracle(model, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    table = forward_logprobs(model, context + continuation)
    rows = [table[len(context) - 1 + j] for j in range(len(continuation))]
    total = sum(row[token].item() for row, token in zip(rows, continuation, strict=True))
    return total, all(int(row.argmax()) == token for row, token in zip(rows, continuation, strict=True))


def lm_eval_parse(reply: dict, ctxlens: list[int], *, drop_last: bool = True) -> list[tuple[float, bool]]:
    """lm-eval's `parse_logprobs` for completions, restated."""
    results = []
    for choice, ctxlen in zip(sorted(reply["choices"], key=lambda c: c["index"]), ctxlens, strict=True):
        end = -1 if drop_last else None
        logprobs = choice["logprobs"]["token_logprobs"][ctxlen:end]
        tops = choice["logprobs"]["top_logprobs"][ctxlen:end]
        greedy_ = all(lp == max(top.values()) for lp, top in zip(logprobs, tops, strict=True))
        results.append((sum(logprobs), greedy_))
    return results


@pytest.mark.parametrize("max_tokens", [1, 0])
def test_loglikelihood_of_token_prompts_matches_the_model(server, tiny, max_tokens):
    model, tokenizer = tiny
    encoded = [(tokenizer(c)["input_ids"], tokenizer(x)["input_ids"]) for c, x in PAIRS]
    # A continuation that is the model's own greedy choice must come back greedy.
    context = tokenizer("Z")["input_ids"]
    encoded.append((context, greedy(model, tokenizer, context, 3)))
    body = {
        "model": server.model,
        "prompt": [c + x for c, x in encoded],
        "temperature": 0,
        "max_tokens": max_tokens,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }
    parsed = lm_eval_parse(post(server, body), [len(c) for c, _ in encoded], drop_last=max_tokens == 1)
    for (total, is_greedy), (context, continuation) in zip(parsed, encoded, strict=True):
        expected, expected_greedy = oracle(model, context, continuation)
        assert total == pytest.approx(expected, abs=1e-5)
        assert is_greedy == expected_greedy
    assert parsed[-1][1] is True


def test_loglikelihood_of_text_prompts_matches_the_model(server, tiny):
    model, tokenizer = tiny
    body = {
        "model": server.model,
        "prompt": [c + x for c, x in PAIRS],
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }
    reply = post(server, body)
    ctxlens = [len(tokenizer(c)["input_ids"]) for c, _ in PAIRS]
    for (total, _), (context, continuation) in zip(lm_eval_parse(reply, ctxlens), PAIRS, strict=True):
        expected, _ = oracle(model, tokenizer(context)["input_ids"], tokenizer(continuation)["input_ids"])
        assert total == pytest.approx(expected, abs=1e-5)
    assert [c["text"][: len(p)] for c, p in zip(reply["choices"], (c + x for c, x in PAIRS), strict=True)] == [
        c + x for c, x in PAIRS
    ]  # echo returns the prompt as sent


def test_generate_until_requests(server, tiny):
    model, tokenizer = tiny
    contexts = ["Q: 1+1=", "Q: 7*6="]
    body = {
        "model": server.model,
        "prompt": contexts,
        "max_tokens": 12,
        "temperature": 0,
        "stop": ["\n\n", "Q:"],
        "seed": 1234,
    }
    reply = post(server, body)
    texts = [c["text"] for c in sorted(reply["choices"], key=lambda c: c["index"])]
    for text, context in zip(texts, contexts, strict=True):
        ids = tokenizer(context)["input_ids"]
        full = tokenizer.decode(greedy(model, tokenizer, ids, 12), skip_special_tokens=True)
        cut = min([full.find(s) for s in ("\n\n", "Q:") if s in full] + [len(full)])
        assert text == full[:cut]  # greedy answer, cut before the first stop string
