"""`POST /v1/completions`: text or token-id prompts, `logprobs`, `echo`, as lm-eval's `local-completions` sends them.

A log-likelihood request from lm-eval is `echo=true, logprobs=1, max_tokens=1` (or 0) with the context and
continuation as one prompt: the answer must carry the log-prob of every prompt token given its prefix.
Those come from `Engine.score`, the learner's own teacher-forced log-probs, never from a re-tokenized text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from posttrain.rollout.types import Request as EngineRequest
from posttrain.serve.errors import APIError
from posttrain.serve.responses import (
    TokenLogprobs,
    completion_stream_chunks,
    envelope,
    new_id,
    sse,
    text_choice,
    usage,
)
from posttrain.serve.rsa import ZYPHRA_KEYS
from posttrain.serve.schemas import CompletionRequest
from posttrain.serve.state import ServerState, SlotStreamingResponse
from posttrain.serve.text import Generated, finish

router = APIRouter()


@dataclass
class _Prompt:
    ids: list[int]
    text: str  # what `echo` returns: the prompt as sent, or the decoded ids


@dataclass
class _Answer:
    prompt: _Prompt
    generated: Generated
    logprobs: TokenLogprobs | None  # completion tokens, preceded by the prompt's with echo


def _prompts(state: ServerState, body: CompletionRequest) -> list[_Prompt]:
    if not body.prompts:
        raise APIError("the prompt list is empty", param="prompt")
    prompts = []
    for prompt in body.prompts:
        if isinstance(prompt, str):
            ids = state.tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]
            prompts.append(_Prompt(state.check_ids(ids, "prompt"), prompt))
        else:
            ids = state.check_ids(list(prompt), "prompt")
            prompts.append(_Prompt(ids, state.tokenizer.decode(ids, skip_special_tokens=False)))
    return prompts


def _check_no_rsa(body: CompletionRequest) -> None:
    extra = body.model_extra or {}
    asked = [k for k in extra if k in ZYPHRA_KEYS or (k == "rsa" and extra[k] not in (None, False))]
    if asked:
        raise APIError(f"RSA is served on /v1/chat/completions, not here ({', '.join(asked)})", param=asked[0])


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> JSONResponse | SlotStreamingResponse:
    state: ServerState = request.app.state.serve
    state.check_model(body.model)
    _check_no_rsa(body)
    prompts = _prompts(state, body)
    requests = []
    for p, prompt in enumerate(prompts):
        if body.max_tokens == 0:  # scoring only: the whole prompt must fit
            if state.context_limit is not None and len(prompt.ids) > state.context_limit:
                raise APIError(
                    f"the prompt has {len(prompt.ids)} tokens but the model's context is {state.context_limit}",
                    param="prompt",
                )
            continue
        params = state.sampling(body, state.budget(len(prompt.ids), body.max_tokens, "prompt"))
        ids = tuple(prompt.ids)
        requests += [
            EngineRequest(id=f"{p}.{j}", params=params, prompt_ids=ids, seed=state.request_seed(body, p, j))
            for j in range(body.n)
        ]
    if body.stream:
        return SlotStreamingResponse(_stream(state, body, prompts, requests), state.admit())
    with state.admit():
        answers = await _answer(state, body, prompts, requests)
    with_top = bool(body.logprobs)
    response = envelope("text_completion", new_id("cmpl"), state.model_name)
    response["choices"] = []
    for index, answer in enumerate(answers):
        prefix = answer.prompt.text if body.echo else ""
        logprobs = None
        if answer.logprobs is not None:
            offset = 0 if body.echo else len(answer.prompt.text)
            logprobs = answer.logprobs.completion(state.tokenizer, with_top=with_top, offset=offset)
        finish_reason = answer.generated.finish_reason
        response["choices"].append(text_choice(index, prefix + answer.generated.text, logprobs, finish_reason))
    response["usage"] = _usage(prompts, answers)
    return JSONResponse(response)


async def _answer(
    state: ServerState, body: CompletionRequest, prompts: list[_Prompt], requests: list[EngineRequest]
) -> list[_Answer]:
    """One answer per prompt and sample, prompt-major (OpenAI's choice order)."""
    if requests:
        rollouts = iter(await state.batcher.generate(requests))
        generated = [finish(next(rollouts), state.tokenizer, body.stop_strings) for _ in prompts for _ in range(body.n)]
    else:  # max_tokens=0: the prompt alone is scored
        generated = [Generated([], [], [], 0, "length") for _ in prompts for _ in range(body.n)]
    owners = [prompt for prompt in prompts for _ in range(body.n)]
    if body.logprobs is None:
        return [_Answer(p, g, None) for p, g in zip(owners, generated, strict=True)]
    scores = [None] * len(generated)
    if body.echo or body.logprobs > 0:
        temperature = 1.0 if body.temperature is None else body.temperature
        scores = await state.batcher.score(
            [p.ids + g.token_ids for p, g in zip(owners, generated, strict=True)],
            temperature=temperature,
            top_logprobs=body.logprobs,
        )
    answers = []
    for prompt, g, score in zip(owners, generated, scores, strict=True):
        logprobs = TokenLogprobs.of_completion(g, len(prompt.ids), score)
        if body.echo:
            logprobs = TokenLogprobs.of_prompt(prompt.ids, score) + logprobs
        answers.append(_Answer(prompt, g, logprobs))
    return answers


def _usage(prompts: list[_Prompt], answers: list[_Answer]) -> dict[str, int]:
    return usage(sum(len(p.ids) for p in prompts), sum(a.generated.generated_tokens for a in answers))


async def _stream(
    state: ServerState, body: CompletionRequest, prompts: list[_Prompt], requests: list[EngineRequest]
) -> AsyncIterator[str]:
    base = envelope("text_completion", new_id("cmpl"), state.model_name)
    try:
        answers = await _answer(state, body, prompts, requests)
    except Exception as exc:  # the status line is already sent: the error travels as an event
        yield sse({"error": {"message": f"generation failed: {exc}", "type": "server_error", "param": None}})
        yield sse("[DONE]")
        return
    with_top = bool(body.logprobs)
    for index, answer in enumerate(answers):
        completion_logprobs = answer.logprobs
        if body.echo:
            count = len(answer.prompt.ids)
            echoed = None
            if answer.logprobs is not None:
                echoed = answer.logprobs.span(0, count).completion(state.tokenizer, with_top=with_top)
                completion_logprobs = answer.logprobs.span(count, len(answer.logprobs.ids))
            yield sse(base | {"choices": [text_choice(index, answer.prompt.text, echoed, None)]})
        for chunk in completion_stream_chunks(
            base,
            index,
            answer.generated.pieces,
            answer.generated.finish_reason,
            completion_logprobs,
            state.tokenizer,
            with_top,
        ):
            yield sse(chunk)
    if body.include_usage:
        yield sse(base | {"choices": [], "usage": _usage(prompts, answers)})
    yield sse("[DONE]")
