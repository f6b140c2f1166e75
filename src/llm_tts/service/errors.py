"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code", "request_id"}}`` for every
failure (``request_id``: the request's id, also in its ``X-Request-Id`` header).

Every :class:`~llm_tts.errors.LLMTTSError` maps through its ``http_status``/``code``/``param``;
pydantic errors (through :mod:`llm_tts.validation_errors`) and routing errors take the same shape,
naming the field, so a client mistake is always a 4xx and never a 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from llm_tts.errors import (
    AuthenticationError,
    InternalError,
    LLMTTSError,
    MalformedJSONError,
    RequestTooLargeError,
    TooManyRequestsError,
)
from llm_tts.http_retry import SHOULD_RETRY_HEADER
from llm_tts.service.completion_protocol import COMPLETION_REQUEST_FIELDS
from llm_tts.service.openai_fields import REFUSED_COMPLETION_FIELDS, REFUSED_FIELDS, refusal_reason
from llm_tts.service.protocol import REQUEST_FIELDS
from llm_tts.service.request_context import REQUEST_ID_HEADER, current_request_id
from llm_tts.validation_errors import Wording, typed_error

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
    "install_error_handlers",
    "send_error",
]

log = logging.getLogger("llm_tts.service")


def error_body(exc: LLMTTSError) -> dict[str, Any]:
    error = {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}
    return {"error": {**error, "request_id": current_request_id()}}


def error_headers(exc: LLMTTSError) -> dict[str, str]:
    headers = {} if exc.retryable else {SHOULD_RETRY_HEADER: "false"}  # read by llm_tts.http_retry and OpenAI's SDK
    request_id = current_request_id()
    if request_id is not None:  # also set by the request id middleware, except on the last-resort 500
        headers[REQUEST_ID_HEADER] = request_id
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


# How a request body's validation errors are worded (llm_tts.validation_errors translates them):
# a chat completion's, and a text completion's (POST .../v1/completions), which also refuses
# every chat-only field by name.
COMPLETIONS_PATH_SUFFIX = "/v1/completions"
_REFUSED = {name: reason for name in REFUSED_FIELDS if (reason := refusal_reason(name)) is not None}
_CHAT_ONLY = "a chat field: /v1/completions takes one prompt (text or token ids); send chats to /v1/chat/completions"
_CHAT_BODY = Wording(
    names=REQUEST_FIELDS,
    whole="body",
    whole_rule="must be a JSON object with at least 'messages' (send it with Content-Type: application/json)",
    refused=_REFUSED,
)
_COMPLETION_BODY = Wording(
    names=COMPLETION_REQUEST_FIELDS,
    whole="body",
    whole_rule="must be a JSON object with at least 'prompt' (send it with Content-Type: application/json)",
    refused={
        **{name: _CHAT_ONLY for name in REQUEST_FIELDS if name not in COMPLETION_REQUEST_FIELDS},
        **_REFUSED,
        **{name: f"not supported: {reason}" for name, reason in REFUSED_COMPLETION_FIELDS.items()},
    },
)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def _wording(path: str) -> Wording:
    """How the body errors of a request to ``path`` are worded: a text completion's or a chat's."""
    return _COMPLETION_BODY if path.endswith(COMPLETIONS_PATH_SUFFIX) else _CHAT_BODY


def install_error_handlers(app: FastAPI) -> None:

    @app.exception_handler(LLMTTSError)
    async def _typed(_: Request, exc: LLMTTSError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(typed_error(exc.errors(), **_wording(request.url.path)))

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
        # The traceback goes to the log under the request id; the client gets the id, not internals.
        log.error("unexpected error", exc_info=exc)
        return error_response(
            InternalError(
                f"internal server error (request {current_request_id()}); the server log has the details under that id"
            )
        )
