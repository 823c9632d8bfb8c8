"""`POST /v1/chat/completions`: plain, streamed, or Markovian RSA.

The prompt is the chat template's rendering (`encode_messages`, shared with the rollout workers). The `n`
samples of a request, and concurrent requests, go through the dynamic batcher; an RSA request runs
`run_markovian_rsa` in a thread whose rounds go through the same batcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from posttrain.rollout.markovian_rsa import run_markovian_rsa
from posttrain.rollout.types import Request as EngineRequest
from posttrain.rollout.worker import encode_messages
from posttrain.serve import rsa
from posttrain.serve.responses import (
    TokenLogprobs,
    chat_choice,
    chat_stream_chunks,
    envelope,
    new_id,
    sse,
    usage,
)
from posttrain.serve.schemas import ChatCompletionRequest
from posttrain.serve.state import ServerState, SlotStreamingResponse
from posttrain.serve.text import Generated, finish

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | SlotStreamingResponse:
    state: ServerState = request.app.state.serve
    state.check_model(body.model)
    messages = [m.as_template_message() for m in body.messages]
    plan = rsa.plan(body, state.cfg.rsa, default_on=state.cfg.serve.rsa, max_chains=state.cfg.serve.max_rsa_chains)
    if plan is not None:
        problem = rsa.problem_of(messages)
        rsa.check_fits(problem, state.tokenizer, plan, state.context_limit)
        with state.admit():
            return JSONResponse(await _run_rsa(state, body, problem, plan))
    prompt = encode_messages(state.tokenizer, messages)
    params = state.sampling(body, state.budget(len(prompt), body.token_budget, "messages"))
    requests = [
        EngineRequest(id=str(i), params=params, prompt_ids=tuple(prompt), seed=state.request_seed(body, i))
        for i in range(body.n)
    ]
    top = (body.top_logprobs or 0) if body.logprobs else None
    if body.stream:
        return SlotStreamingResponse(_stream(state, body, prompt, requests, top), state.admit())
    with state.admit():
        generated, logprobs = await _generate(state, body, prompt, requests, top)
    response = envelope("chat.completion", new_id("chatcmpl"), state.model_name)
    response["choices"] = [
        chat_choice(i, g, lp.chat(state.tokenizer) if lp is not None else None)
        for i, (g, lp) in enumerate(zip(generated, logprobs, strict=True))
    ]
    response["usage"] = usage(len(prompt), sum(g.generated_tokens for g in generated))
    return JSONResponse(response)


async def _generate(
    state: ServerState, body: ChatCompletionRequest, prompt: list[int], requests: list[EngineRequest], top: int | None
) -> tuple[list[Generated], list[TokenLogprobs | None]]:
    rollouts = await state.batcher.generate(requests)
    generated = [finish(r, state.tokenizer, body.stop_strings) for r in rollouts]
    if top is None:
        return generated, [None] * len(generated)
    scores = [None] * len(generated)
    if top > 0:  # alternatives need a teacher-forced pass over prompt + completion
        scores = await state.batcher.score(
            [prompt + g.token_ids for g in generated],
            temperature=requests[0].params.temperature,
            top_logprobs=top,
        )
    return generated, [TokenLogprobs.of_completion(g, len(prompt), s) for g, s in zip(generated, scores, strict=True)]


async def _stream(
    state: ServerState, body: ChatCompletionRequest, prompt: list[int], requests: list[EngineRequest], top: int | None
) -> AsyncIterator[str]:
    """The role event at once, then each choice's content once the engine has it, then usage and [DONE]."""
    base = envelope("chat.completion.chunk", new_id("chatcmpl"), state.model_name)
    for index in range(body.n):
        role = {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        yield sse(base | {"choices": [role]})
    try:
        generated, logprobs = await _generate(state, body, prompt, requests, top)
    except Exception as exc:  # the status line is already sent: the error travels as an event
        yield sse({"error": {"message": f"generation failed: {exc}", "type": "server_error", "param": None}})
        yield sse("[DONE]")
        return
    for index, (g, lp) in enumerate(zip(generated, logprobs, strict=True)):
        for chunk in chat_stream_chunks(base, index, g, lp, state.tokenizer):
            yield sse(chunk)
    if body.include_usage:
        yield sse(base | {"choices": [], "usage": usage(len(prompt), sum(g.generated_tokens for g in generated))})
    yield sse("[DONE]")


async def _run_rsa(state: ServerState, body: ChatCompletionRequest, problem: str, plan: rsa.RSAPlan) -> dict[str, Any]:
    sampling = state.sampling(body, plan.cfg.beta)
    seed = body.seed if body.seed is not None else state.cfg.seed
    loop = asyncio.get_running_loop()
    generate = state.batcher.generate_blocking
    (tree,) = await loop.run_in_executor(
        state.rsa_threads,
        lambda: run_markovian_rsa([problem], generate, state.tokenizer, plan.cfg, sampling, seed=seed),
    )
    rollouts = [c.rollout for round_ in tree.rounds for c in round_]
    response = envelope("chat.completion", new_id("chatcmpl-rsa"), state.model_name)
    response["choices"] = [
        chat_choice(index, finish(tree.final[chain].rollout, state.tokenizer, body.stop_strings), None)
        for index, chain in enumerate(rsa.ranked(tree)[: plan.choices])
    ]
    response["usage"] = usage(
        sum(len(r.prompt_ids) for r in rollouts), sum(len(r.completion_ids) for r in rollouts)
    )
    if plan.metadata:
        response["rsa_metadata"] = rsa.metadata(tree, plan)
    if plan.aggregation_prompt:
        response["aggregation_prompt"] = rsa.final_aggregation_prompt(tree, plan)
    return response
