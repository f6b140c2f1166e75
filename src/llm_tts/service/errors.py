"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` for every failure.

Every :class:`~llm_tts.errors.LLMTTSError` maps through its ``http_status``/``code``/``param``;
pydantic and routing errors are translated into the same shape, naming the field, so a client
mistake is always a 4xx and never a 500.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from llm_tts.errors import (
    AuthenticationError,
    InternalError,
    InvalidParameterError,
    LLMTTSError,
    MalformedJSONError,
    RequestTooLargeError,
    TooManyRequestsError,
    UnknownNameError,
)
from llm_tts.http_retry import SHOULD_RETRY_HEADER
from llm_tts.service.openai_fields import refusal_reason

# The service's own errors live in llm_tts.errors, with the table clients decode them by.
__all__ = [
    "AuthenticationError",
    "InternalError",
    "MalformedJSONError",
    "RequestTooLargeError",
    "TooManyRequestsError",
    "error_body",
    "error_headers",
    "error_response",
    "from_validation_errors",
    "install_error_handlers",
    "send_error",
]

log = logging.getLogger("llm_tts.service")

_MAX_SHOWN = 120  # characters of a rejected value echoed back in a message


def error_body(exc: LLMTTSError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}}


def error_headers(exc: LLMTTSError) -> dict[str, str]:
    headers = {} if exc.retryable else {SHOULD_RETRY_HEADER: "false"}  # read by llm_tts.http_retry and OpenAI's SDK
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    return headers


def error_response(exc: LLMTTSError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=exc.http_status, headers=error_headers(exc))


async def send_error(send: Send, exc: LLMTTSError) -> None:
    """Answer with ``exc`` straight from ASGI middleware (before any route runs)."""
    body = json.dumps(error_body(exc)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(exc).items()]
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- pydantic validation errors -> typed errors ------------------------------------------------
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "null"}


def _param_of(loc: Iterable[Any]) -> str:
    """('body', 'messages', 0, 'role') -> 'messages[0].role' (union member tags dropped)."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part) in _UNION_TAGS or "-" in str(part):
            continue  # pydantic names the union member it tried, e.g. 'list[str]'
        else:
            out += f".{part}" if out else str(part)
    return out


class _Shown:
    """A rejected value as echoed in a message: its repr, truncated."""

    def __init__(self, value: Any) -> None:
        text = repr(value)
        self.text = text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."

    def __repr__(self) -> str:
        return self.text


def from_validation_errors(errors: list[Mapping[str, Any]], valid_fields: Iterable[str]) -> LLMTTSError:
    """The first pydantic error of a request, as the typed error a client can act on."""
    if not errors:
        return InvalidParameterError("body", None, "the request could not be validated")
    err = errors[0]
    kind = err.get("type", "")
    if kind == "json_invalid":
        ctx = err.get("ctx") or {}
        pos = [p for p in err.get("loc", ()) if isinstance(p, int)]
        where = f" at character {pos[0]}" if pos else ""
        return MalformedJSONError(f"{ctx.get('error', 'decode error')}{where}")
    param = _param_of(err.get("loc", ()))
    if kind == "extra_forbidden":
        reason = refusal_reason(param.rsplit(".", 1)[-1])  # an OpenAI field refused on purpose: say why
        if reason is not None:
            return InvalidParameterError(param, _Shown(err.get("input")), reason)
        return UnknownNameError("parameter", param.rsplit(".", 1)[-1], list(valid_fields), param=param)
    if kind == "missing":
        if not param:
            return InvalidParameterError("body", None, "a JSON object with at least 'messages' is required")
        return InvalidParameterError(param, None, "this field is required")
    if not param:  # the body itself is wrong: not an object, or empty
        return InvalidParameterError(
            "body",
            _Shown(err.get("input")),
            "the request body must be a JSON object (send it with Content-Type: application/json)",
        )
    return InvalidParameterError(param, _Shown(err.get("input")), str(err.get("msg", "invalid value")))


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def install_error_handlers(app: FastAPI, valid_fields: Iterable[str]) -> None:
    fields = list(valid_fields)

    @app.exception_handler(LLMTTSError)
    async def _typed(_: Request, exc: LLMTTSError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_validation_errors(list(exc.errors()), fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = LLMTTSError(f"no route {request.method} {request.url.path}; see /docs for the routes")
        elif exc.status_code == 405:
            err = LLMTTSError(f"method {request.method} is not allowed on {request.url.path}")
        else:
            err = LLMTTSError(str(exc.detail))
        err.http_status = exc.status_code
        err.code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(err), status_code=exc.status_code, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        # Log the traceback under a reference; the client gets the reference, not internals.
        log.error("unexpected error (ref %s)", ref, exc_info=exc)
        return error_response(InternalError(f"internal server error (ref {ref}); the server log has the details"))
