"""In-process mode: a shared engine per (model, backend, options), run off the caller's thread.

Loading a model takes seconds and gigabytes, so every ChatTTS instance that names the same model,
backend and options shares one :class:`~llm_tts.engine.TTSEngine`. A run executes in a worker
thread; its progress events come back to the caller's thread (sync) or event loop (async), so
callbacks fire where LangChain expects them and the event loop is never blocked. A caller that
stops consuming (closed generator, cancelled task) cancels the search via RunControl.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any, AsyncIterator, Iterator, Sequence

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.integrations.events import Reply, RunItem
from llm_tts.messages import ChatMessage
from llm_tts.progress import RunControl

_EngineKey = tuple[str | None, str, str | None, str]
_engines: dict[_EngineKey, TTSEngine] = {}
_engine_locks: dict[_EngineKey, threading.Lock] = {}
_cache_lock = threading.Lock()


def _key(model: str | None, backend: str, prm_model: str | None, options: dict[str, Any]) -> _EngineKey:
    return (model, backend, prm_model, json.dumps(options, sort_keys=True, default=repr))


def shared_engine(
    model: str | None, backend: str = "auto", *, prm_model: str | None = None, options: dict[str, Any] | None = None
) -> TTSEngine:
    """The engine for these settings, created on first use and shared afterwards."""
    options = dict(options or {})
    key = _key(model, backend, prm_model, options)
    with _cache_lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        lock = _engine_locks.setdefault(key, threading.Lock())
    with lock:  # one load per key, without holding the global lock during a slow model load
        engine = _engines.get(key)
        if engine is None:
            engine = TTSEngine.create(model, backend, prm_model=prm_model, **options)
            with _cache_lock:
                _engines[key] = engine
        return engine


def clear_engine_cache() -> None:
    """Close and forget every shared engine (frees their models)."""
    with _cache_lock:
        engines = list(_engines.values())
        _engines.clear()
        _engine_locks.clear()
    for engine in engines:
        engine.close()


def iter_run(
    engine: TTSEngine, messages: Sequence[ChatMessage], config: TTSConfig, *, timeout: float | None = None
) -> Iterator[RunItem]:
    """Run in a worker thread; yield its progress events here as they happen, then the Reply."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    control = RunControl.with_timeout(timeout)

    def work() -> None:
        try:
            result = engine.run(messages, config, progress=lambda ev: items.put(("item", ev)), control=control)
            items.put(("item", Reply.from_result(result)))
        except BaseException as e:  # handed to the consumer, who re-raises it
            items.put(("error", e))
        items.put(("end", None))

    threading.Thread(target=work, name="llm-tts-run", daemon=True).start()
    try:
        while True:
            kind, value = items.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
    finally:
        control.cancel()  # no-op after a finished run; stops an abandoned one at its next step


async def aiter_run(
    engine: TTSEngine, messages: Sequence[ChatMessage], config: TTSConfig, *, timeout: float | None = None
) -> AsyncIterator[RunItem]:
    """Async twin of :func:`iter_run`: the engine runs in the loop's executor, never on the loop."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    control = RunControl.with_timeout(timeout)

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, (kind, value))
        except RuntimeError:  # the loop closed under an abandoned run: nobody is listening
            control.cancel()

    def work() -> None:
        try:
            result = engine.run(messages, config, progress=lambda ev: put("item", ev), control=control)
            put("item", Reply.from_result(result))
        except BaseException as e:
            put("error", e)
        put("end", None)

    loop.run_in_executor(None, work)  # work() never raises: its outcome comes through the queue
    try:
        while True:
            kind, value = await items.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
    finally:
        control.cancel()  # an abandoned run ends by itself at its next RunControl.check()
