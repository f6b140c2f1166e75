"""A request id on every request: in its response header, its error bodies and its log lines.

The id is the client's ``X-Request-Id`` when it sends a usable one (1 to 128 characters of
letters, digits and ``-_.:``; anything else could forge log lines), else one made here
(``req-`` and 32 hex digits). An id equal to the request's own bearer token is replaced: a key
pasted into the wrong header never reaches a log or a response.

The id lives in :data:`llm_tts.service.request_context.request_id_var`, which follows the
request's work into threads and log records (see there); the request's span (:mod:`llm_tts.spans`) carries it too.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_tts.service.auth import bearer_token
from llm_tts.service.request_context import REQUEST_ID_HEADER, request_id_var
from llm_tts.spans import span

MAX_REQUEST_ID_LENGTH = 128
_SAFE_ID = re.compile(rf"[A-Za-z0-9._:\-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()

log = logging.getLogger("llm_tts.service.requests")


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def accepted_request_id(sent: str | None, token: str | None = None) -> str | None:
    """``sent`` when it is a usable id (safe characters, bounded, not the bearer token), else None."""
    if sent is None or _SAFE_ID.fullmatch(sent) is None:
        return None
    if token is not None and hmac.compare_digest(sent.encode(), token.encode()):
        return None
    return sent


def _header(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            return value.decode("latin-1")
    return None


class RequestIdMiddleware:
    """Outermost middleware: sets the request's id, echoes it in ``X-Request-Id`` on every
    response (errors from inner middleware included) and logs one line when the response ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(_header(scope), bearer_token(scope)) or new_request_id()
        # Not reset afterwards on purpose: each request runs in its own task (its own context),
        # and the server's last-resort error handler runs outside this middleware, in that task.
        request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, (_HEADER_KEY, request_id.encode())]}
            await send(message)

        attributes = {"http.request.method": scope.get("method"), "url.path": scope.get("path")}
        try:
            with span("llm_tts.request", {**attributes, "llm_tts.request_id": request_id}) as request:
                await self.app(scope, receive, send_with_id)
                request.set({"http.response.status_code": status})
        finally:
            log.info(
                "%s %s -> %d in %.3f s", scope.get("method"), scope.get("path"), status, time.perf_counter() - started
            )
