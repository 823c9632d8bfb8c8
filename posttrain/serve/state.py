"""What every route shares: the served model, its tokenizer and context, the batcher, and admission slots.

A request holds a slot from admission until its response is fully sent, or until its client goes away:
a streamed response gives its slot back in `SlotStreamingResponse`, whatever ends the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from posttrain.rollout.sampling import sample_seed
from posttrain.rollout.types import SamplingParams
from posttrain.serve.batcher import DynamicBatcher
from posttrain.serve.errors import APIError


@dataclass
class ServerState:
    cfg: Any  # the composed posttrain Config
    model_name: str
    tokenizer: Any
    context_limit: int | None
    runner: Any  # RolloutWorker (in-process) or RolloutFleet: generate(requests), score(sequences)
    batcher: DynamicBatcher | None = None  # made at startup, inside the server's event loop
    rsa_threads: ThreadPoolExecutor | None = None  # drives RSA requests' rounds; made at startup
    in_flight: int = 0
    disconnects: int = 0

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise APIError(f"model {name!r} is not served here; this server serves {self.model_name!r}", param="model")

    def admit(self) -> Slot:
        limit = self.cfg.serve.max_concurrent_requests
        if self.in_flight >= limit:
            raise APIError(
                f"the server is at capacity ({limit} requests in flight, serve.max_concurrent_requests); retry later",
                status=429,
                kind="rate_limit_error",
            )
        self.in_flight += 1
        return Slot(self)

    def budget(self, prompt_tokens: int, requested: int | None, param: str) -> int:
        """New tokens for a prompt: what was asked if it fits, else a 400; `default_max_tokens` when not asked."""
        limit = self.context_limit
        if limit is not None and prompt_tokens >= limit:
            raise APIError(
                f"the prompt has {prompt_tokens} tokens but the model's context is {limit} tokens", param=param
            )
        room = None if limit is None else limit - prompt_tokens
        if requested is None:
            return self.cfg.serve.default_max_tokens if room is None else min(self.cfg.serve.default_max_tokens, room)
        if room is not None and requested > room:
            raise APIError(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({requested}) exceed the model's context "
                f"of {limit} tokens",
                param="max_tokens",
            )
        return requested

    def check_ids(self, ids: list[int], param: str) -> list[int]:
        if not ids:
            raise APIError("the prompt is empty", param=param)
        vocab = len(self.tokenizer)
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise APIError(f"token id {bad} is outside the vocabulary [0, {vocab})", param=param)
        return ids

    @staticmethod
    def sampling(body: Any, max_new_tokens: int) -> SamplingParams:
        """OpenAI's defaults (temperature 1, top-p 1); a request's `seed` seeds its samples (`request_seed`)."""
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=max(0, body.top_k or 0),
            stop=body.stop_strings,
        )

    @staticmethod
    def request_seed(body: Any, *index: int) -> int | None:
        """Sample `index` of a request with a `seed` draws from its own stream, whatever else shares its batch."""
        return None if body.seed is None else sample_seed("serve", body.seed, *index)

    def health(self) -> dict[str, Any]:
        batcher = self.batcher
        return {
            "status": "ok",
            "model": self.model_name,
            "in_flight": self.in_flight,
            "queued": batcher.queued if batcher else 0,
            "engine_busy": bool(batcher and batcher.busy),
            "engine_calls": batcher.engine_calls if batcher else 0,
            "largest_batch": batcher.largest_batch if batcher else 0,
            "disconnects": self.disconnects,
        }


class Slot:
    def __init__(self, state: ServerState) -> None:
        self.state, self.held = state, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.state.in_flight -= 1

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SlotStreamingResponse(StreamingResponse):
    """An SSE stream that returns its slot however it ends: finished, failed, or its client gone."""

    def __init__(self, events: AsyncIterator[str], slot: Slot) -> None:
        super().__init__(self._watch(events, slot.state), media_type="text/event-stream")
        self.slot = slot

    @staticmethod
    async def _watch(events: AsyncIterator[str], state: ServerState) -> AsyncIterator[str]:
        finished = False
        try:
            async for event in events:
                yield event
            finished = True
        finally:  # cancelled while the engine worked, or closed at an event the client never took
            if not finished:
                state.disconnects += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
