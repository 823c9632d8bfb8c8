"""OpenAI-shaped errors: every failure answers `{"error": {"message", "type", "param"}}` with a fitting status.

Bad input is a 400 (`invalid_request_error`), a full server a 429, and only a bug is a 500. FastAPI's own
422 for a body that does not match the schema, and its JSON decode errors, become 400s here as well.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("posttrain.serve")


class APIError(Exception):
    def __init__(self, message: str, *, param: str | None = None, status: int = 400, kind: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def error_body(message: str, kind: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _response(exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.kind, exc.param), status_code=exc.status)


def _location(loc: tuple) -> str | None:
    """`("body", "messages", 0, "content")` -> `messages.0.content`; None for the body as a whole."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError) -> APIError:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return APIError(f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    param = _location(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid request")
    return APIError(f"{param}: {message}" if param else message, param=param)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error"), status_code=500)
