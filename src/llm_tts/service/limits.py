"""Per-server limits: concurrent runs and their wait queue (429/503), request body size (413), budget
and tokens (400)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_tts.config import TTSConfig
from llm_tts.errors import InvalidParameterError, QueueFullError, QueueTimeoutError
from llm_tts.selection import builtin_path, builtin_selectors
from llm_tts.service.errors import RequestTooLargeError, TooManyRequestsError, send_error
from llm_tts.service.settings import ServiceSettings
from llm_tts.strategies import get_strategy

SERIAL_BACKEND_CONCURRENCY = 4  # runs at once on a backend that generates one call at a time


def apply_limits(config: TTSConfig, settings: ServiceSettings) -> TTSConfig:
    """The config within this server's limits. An explicit value over a limit is an error naming
    the field; a default over a limit is lowered to it (the operator chose the limit)."""
    explicit = config.model_fields_set
    spec = get_strategy(config.tts_strategy)
    updates: dict[str, int | str] = {}

    def cap(field: str, value: int, limit: int, what: str) -> None:
        if value <= limit:
            return
        if field in explicit:
            raise InvalidParameterError(field, value, f"this server allows {what} of at most {limit}")
        updates[field] = limit

    cap("max_tokens", config.max_tokens, settings.max_tokens, "max_tokens")
    if config.tts_route is not None:
        cap("tts_route", max(config.tts_route), settings.max_budget, "a budget")
    if config.tts_budget is not None:
        cap("tts_budget", config.tts_budget, settings.max_budget, "a budget")
    else:  # the same quantity tts_budget would set: paths, trajectories, candidates or beams
        cap(spec.size_field, spec.size(config), settings.max_budget, "a budget")
    if config.tts_selector is not None:
        updates["tts_selector"] = served_selector(config.tts_selector, settings)
    return config.model_copy(update=updates) if updates else config


def served_selector(name: str, settings: ServiceSettings) -> str:
    """What ``tts_selector`` names on this server: a builtin, or a file name in the operator's
    selector directory (never a path: a client must not probe the server's files). Missing and
    refused names get the same error, so the answer says nothing about what exists elsewhere."""
    if builtin_path(name) is not None:
        return name
    folder = settings.selector_dir
    plain = name not in (".", "..") and not any(sep in name for sep in ("/", "\\", "\0"))
    if folder is not None and plain and (Path(folder) / name).is_file():
        return str(Path(folder) / name)
    builtins = ", ".join(builtin_selectors()) or "none"
    raise InvalidParameterError(
        "tts_selector",
        name,
        f"this server offers the builtin selectors ({builtins}) and the selector files of its --selector-dir, by file name",
    )


class RunSlots:
    """Runs in flight, with a bounded FIFO queue of requests waiting for a slot.

    A slot is taken in the event loop and released by the worker thread when the run really
    ends, so abandoned (timed-out, disconnected) runs still count. A released slot passes
    straight to the longest waiter. Only a full queue answers 429 (with Retry-After); a request
    that waited ``queue_timeout_s`` answers 503.
    """

    def __init__(self, limit: int, retry_after_s: int, queue_size: int = 0, queue_timeout_s: float = 600.0) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def acquire(self) -> Slot:
        """A slot now, or 429 (the queue is not used)."""
        with self._lock:
            if self._active < self.limit and not self._waiters:
                self._active += 1
                return Slot(self)
        raise TooManyRequestsError(self.limit, self.retry_after_s)

    async def wait(self, timeout_s: float | None = None) -> Slot:
        """A slot as soon as one is free, waiting in the queue at most ``timeout_s`` (default and
        cap: ``queue_timeout_s``); 429 when the queue is full, 503 when the wait runs out."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._active < self.limit and not self._waiters:
                self._active += 1
                return Slot(self)
            if len(self._waiters) >= self.queue_size:
                if not self.queue_size:
                    raise TooManyRequestsError(self.limit, self.retry_after_s)
                raise QueueFullError(self._active, len(self._waiters), self.retry_after_s)
            granted: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, granted))
        wait_s = self.queue_timeout_s if timeout_s is None else min(timeout_s, self.queue_timeout_s)
        try:
            await asyncio.wait_for(granted, max(0.0, wait_s))
        except TimeoutError:
            self._forget(loop, granted)
            raise QueueTimeoutError(wait_s, self.retry_after_s) from None
        except BaseException:  # the request was cancelled while waiting (client gone)
            self._forget(loop, granted)
            raise
        return Slot(self)

    def _forget(self, loop: asyncio.AbstractEventLoop, granted: asyncio.Future[None]) -> None:
        # Still queued: leave the queue. Already handed a slot: _grant finds the future
        # cancelled and passes the slot on.
        with self._lock, contextlib.suppress(ValueError):
            self._waiters.remove((loop, granted))

    def _grant(self, granted: asyncio.Future[None]) -> None:
        """In the waiter's loop: take the slot handed over, or pass it on if the waiter left."""
        if granted.done():
            self._release()
        else:
            granted.set_result(None)

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, granted = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._grant, granted)  # the slot passes on: active unchanged
                    return
                except RuntimeError:  # that loop is closed: try the next waiter
                    continue
            self._active -= 1


def default_concurrency(backend: object) -> int:
    """Runs at once when the settings do not say: what the engine batches across requests
    (``concurrent_sequences``: vLLM's max_num_seqs, an HTTP backend's connections); a backend
    that runs one call at a time (transformers) gains nothing from more than a few."""
    batch = getattr(backend, "concurrent_sequences", None)
    return max(1, int(batch)) if isinstance(batch, int) else SERIAL_BACKEND_CONCURRENCY


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
