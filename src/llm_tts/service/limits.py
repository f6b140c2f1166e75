"""Per-server limits: concurrent runs (429), request body size (413), budget and tokens (400)."""

from __future__ import annotations

import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_tts.config import TTSConfig
from llm_tts.errors import InvalidParameterError
from llm_tts.service.errors import RequestTooLargeError, TooManyRequestsError, send_error
from llm_tts.service.settings import ServiceSettings
from llm_tts.strategies import get_strategy


def apply_limits(config: TTSConfig, settings: ServiceSettings) -> TTSConfig:
    """The config within this server's limits. An explicit value over a limit is an error naming
    the field; a default over a limit is lowered to it (the operator chose the limit)."""
    explicit = config.model_fields_set
    spec = get_strategy(config.tts_strategy)
    updates: dict[str, int] = {}

    def cap(field: str, value: int, limit: int, what: str) -> None:
        if value <= limit:
            return
        if field in explicit:
            raise InvalidParameterError(field, value, f"this server allows {what} of at most {limit}")
        updates[field] = limit

    cap("max_tokens", config.max_tokens, settings.max_tokens, "max_tokens")
    if config.tts_budget is not None:
        cap("tts_budget", config.tts_budget, settings.max_budget, "a budget")
    else:  # the same quantity tts_budget would set: paths, trajectories, candidates or beams
        cap(spec.size_field, getattr(config, spec.size_field), settings.max_budget, "a budget")
    return config.model_copy(update=updates) if updates else config


class RunSlots:
    """Counts runs in flight. A slot is taken in the event loop and released by the worker
    thread when the run really ends, so abandoned (timed-out, disconnected) runs still count."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self._sem = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def acquire(self) -> Slot:
        if not self._sem.acquire(blocking=False):
            raise TooManyRequestsError(self.limit, self.retry_after_s)
        with self._lock:
            self._active += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
        self._sem.release()


class Slot:
    """One taken slot; ``release`` is idempotent so every exit path may call it."""

    def __init__(self, owner: RunSlots) -> None:
        self._owner = owner
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._owner._release()


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await send_error(send, RequestTooLargeError(length, self.max_bytes))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body reader unchanged.
                    from starlette.exceptions import HTTPException

                    raise HTTPException(413, RequestTooLargeError(None, self.max_bytes).message)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
