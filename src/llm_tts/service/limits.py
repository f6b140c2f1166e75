"""Per-server limits: concurrent runs (429), request body size (413), budget and tokens (400)."""

from __future__ import annotations

import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_tts.config import TTSConfig
from llm_tts.errors import InvalidParameterError
from llm_tts.service.errors import RequestTooLargeError, TooManyRequestsError, send_error
from llm_tts.service.settings import ServiceSettings

# The size fields each strategy really uses; beam search costs beams x candidates per step.
STRATEGY_SIZES: dict[str, tuple[str, ...]] = {
    "self_consistency": ("num_paths",),
    "offline_bon": ("tts_num_trajectories",),
    "online_bon": ("tts_candidates_per_step",),
    "beam_search": ("tts_beam_size", "tts_candidates_per_step"),
}


def check_budget(config: TTSConfig, settings: ServiceSettings) -> None:
    """Reject a request whose search is larger than this server allows, naming the field."""
    limit = settings.max_budget
    if config.max_tokens > settings.max_tokens:
        raise InvalidParameterError("max_tokens", config.max_tokens, f"this server allows at most {settings.max_tokens}")
    if config.tts_budget is not None and config.tts_budget > limit:
        raise InvalidParameterError("tts_budget", config.tts_budget, f"this server allows a budget of at most {limit}")
    cost = 1
    for name in STRATEGY_SIZES.get(config.tts_strategy, ()):
        value = getattr(config, name)
        if value > limit:
            raise InvalidParameterError(name, value, f"this server allows at most {limit}")
        cost *= value
    if cost > limit:
        fields = " x ".join(STRATEGY_SIZES[config.tts_strategy])
        raise InvalidParameterError(
            STRATEGY_SIZES[config.tts_strategy][0], cost, f"{fields} must be at most {limit} on this server"
        )


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
