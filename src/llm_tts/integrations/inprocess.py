"""In-process mode: a shared engine per (model, backend, options), run off the caller's thread.

Loading a model takes seconds and gigabytes, so every ChatTTS instance that names the same model,
backend and options shares one :class:`~llm_tts.engine.TTSEngine`. A run is a
:class:`~llm_tts.run_stream.RunStream`: it executes in a worker thread and its progress events
come back to the caller's thread (sync) or event loop (async), so callbacks fire where LangChain
expects them and the event loop is never blocked. A caller that stops consuming (closed
generator, cancelled task) cancels the search.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine, TTSResult
from llm_tts.integrations.run_items import Reply, RunItem
from llm_tts.messages import ChatMessage
from llm_tts.progress import RunControl
from llm_tts.run_stream import RunEvent, RunStream
from llm_tts.structured import OutputSpec
from llm_tts.token_output import token_output

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
    engine: TTSEngine,
    messages: Sequence[ChatMessage],
    config: TTSConfig,
    *,
    timeout: float | None = None,
    output: OutputSpec | None = None,
) -> Iterator[RunItem]:
    """Plan (bad input raises before any generation), run in a worker; yield its progress, then the Reply."""
    control = RunControl.with_timeout(timeout)
    plan = engine.plan(messages, config, output=output)
    with RunStream.start(engine, plan, control=control) as run:
        for event in run:
            yield _run_item(event, engine, config)


async def aiter_run(
    engine: TTSEngine,
    messages: Sequence[ChatMessage],
    config: TTSConfig,
    *,
    timeout: float | None = None,
    output: OutputSpec | None = None,
) -> AsyncGenerator[RunItem, None]:
    """Async twin of :func:`iter_run`: planning (it may load a PRM) and the run stay off the loop."""
    control = RunControl.with_timeout(timeout)
    plan = await asyncio.to_thread(engine.plan, messages, config, output=output)
    with RunStream.start(engine, plan, control=control) as run:
        async for event in run:
            yield _run_item(event, engine, config)


def _run_item(event: RunEvent, engine: TTSEngine, config: TTSConfig) -> RunItem:
    if not isinstance(event, TTSResult):
        return event
    reply = Reply.from_result(event)
    if config.logprobs or config.return_token_ids:
        reply = reply.with_tokens(token_output(event.trajectory, engine.backend, config.top_logprobs or 0))
    return reply
