"""Optional API key on /v1, /sessions and /metrics routes: ``Authorization: Bearer <key>`` or 401.

Runs as ASGI middleware, before the body is read, so an unauthenticated client learns nothing
about the API (not even whether its JSON parses). The key a client sent is never echoed,
logged or compared in variable time.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_tts.service.errors import AuthenticationError, send_error

PROTECTED_PREFIX = "/v1"
# Sessions hold requests and answers, metrics describe the traffic: same key.
PROTECTED_PREFIXES = (PROTECTED_PREFIX, "/sessions", "/metrics")


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIXES):
            token = bearer_token(scope)
            if token is None or not hmac.compare_digest(token.encode(), self._key):
                what = "missing" if token is None else "invalid"
                await send_error(
                    send,
                    AuthenticationError(
                        f"{what} API key: this server requires 'Authorization: Bearer <key>' "
                        "(the key set with --api-key or LLM_TTS_API_KEY)"
                    ),
                )
                return
        await self.app(scope, receive, send)
