"""The FastAPI application: routes, error handlers, and the batcher's life inside the server's event loop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from posttrain.rollout.worker import encode_messages
from posttrain.serve import chat, completions
from posttrain.serve.batcher import DynamicBatcher
from posttrain.serve.errors import install_error_handlers
from posttrain.serve.schemas import DetokenizeRequest, TokenizeRequest
from posttrain.serve.state import ServerState


def build_app(state: ServerState) -> FastAPI:
    """`state.runner` must already hold the model; the batcher starts and stops with the server."""
    serve = state.cfg.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher = DynamicBatcher(
            state.runner, window_s=serve.batch_window_ms / 1000, max_batch_size=serve.max_batch_size
        )
        state.rsa_threads = ThreadPoolExecutor(max_workers=serve.max_concurrent_requests, thread_name_prefix="rsa")
        try:
            yield
        finally:  # uvicorn has drained the in-flight requests by now
            await state.batcher.close()
            state.rsa_threads.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(title="posttrain serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = state
    started = int(time.time())
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(completions.router)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return state.health()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": state.model_name, "object": "model", "created": started, "owned_by": "posttrain"}
        return {"object": "list", "data": [entry | {"max_model_len": state.context_limit}]}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
        state.check_model(body.model)
        if body.messages is not None:
            ids = encode_messages(state.tokenizer, [m.as_template_message() for m in body.messages])
        else:
            ids = state.tokenizer(body.prompt, add_special_tokens=body.add_special_tokens, verbose=False)["input_ids"]
        return {"tokens": ids, "count": len(ids), "max_model_len": state.context_limit}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
        state.check_model(body.model)
        ids = state.check_ids(body.tokens, "tokens") if body.tokens else []
        return {"prompt": state.tokenizer.decode(ids, skip_special_tokens=False)}

    return app
