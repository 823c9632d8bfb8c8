"""The RLAIF judge's OpenAI-compatible HTTP backend (rewards/judge.py), pointed at a live `posttrain serve`."""

from __future__ import annotations

import pytest

from posttrain.rewards.judge import POINTWISE_TEMPLATE, HttpBackend, JudgeError, PointwiseJudge, parse_score
from tests.serve.conftest import chat_prompt, greedy


def test_http_backend_gets_the_models_greedy_reply(server, tiny):
    model, tokenizer = tiny
    backend = HttpBackend(server.url, model=server.model, max_tokens=8, timeout_s=300)
    reply = backend.complete([{"role": "user", "content": "Rate this: 7"}])
    expected = greedy(model, tokenizer, chat_prompt(tokenizer, "Rate this: 7"), 8)
    assert reply == tokenizer.decode(expected, skip_special_tokens=True).split("</think>", 1)[-1]


def test_pointwise_judge_scores_through_the_server(server, tiny):
    model, tokenizer = tiny
    backend = HttpBackend(server.url, model=server.model, max_tokens=8, timeout_s=300)
    judge = PointwiseJudge(backend, failure_score=-1.0, max_concurrency=4)
    prompts, completions = ["What is 2+2?", "Name a colour."], ["4", "blue"]
    output = judge(prompts, completions)
    for prompt, completion, score in zip(prompts, completions, output.scores, strict=True):
        content = POINTWISE_TEMPLATE.format(rubric=judge.rubric, prompt=prompt, response=completion)
        reply = tokenizer.decode(greedy(model, tokenizer, chat_prompt(tokenizer, content), 8), skip_special_tokens=True)
        rating = parse_score(reply.split("</think>", 1)[-1])
        assert score == pytest.approx(-1.0 if rating is None else (rating - 1) / 9)


def test_a_wrong_model_name_is_a_client_error_the_backend_does_not_retry(server):
    backend = HttpBackend(server.url, model="judge", retries=3, backoff_s=30, timeout_s=300)
    with pytest.raises(JudgeError, match="HTTP 400"):
        backend.complete([{"role": "user", "content": "hi"}])  # 30 s backoffs would show up as a hang here
