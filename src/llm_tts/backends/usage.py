"""Token usage as backends report it, collected per run without shared mutable state.

Every backend calls :func:`record_usage` for what it computed: a remote backend with each
response's ``usage`` (the API's own numbers), vLLM with each engine request's prompt and its
prefix-cache hits, transformers with the prompts it prefilled. Whoever wants the numbers of some
work wraps it in ``with metered() as meter:``. The meter lives in a context variable, so
concurrent runs (threads, asyncio tasks) never mix their counts; a backend that reports from
another thread (vLLM's engine loop) captures :func:`active_meters` in the caller's first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass
class UsageMeter:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, those served from a prefix cache
    requests: int = 0
    run: bool = False  # a run's own meter (see metered)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cached_tokens += cached_tokens
        self.requests += 1


Meters = tuple[UsageMeter, ...]
# Meters nest (the engine meters each run; a caller may meter several runs): all active ones count.
_active: ContextVar[Meters] = ContextVar("llm_tts_usage_meters", default=())


@contextmanager
def metered(*, run: bool = False, outside_run: bool = False) -> Iterator[UsageMeter]:
    """Collect the usage every backend reports in this context. ``run``: this is a run's own meter
    (the engine's). ``outside_run``: the enclosing runs' meters do not see this usage (a scorer's
    forward passes are not the run's prompt), while every other enclosing meter (a caller's
    bill) still does."""
    meter = UsageMeter(run=run)
    enclosing = tuple(m for m in _active.get() if not m.run) if outside_run else _active.get()
    token = _active.set((*enclosing, meter))
    try:
        yield meter
    finally:
        _active.reset(token)


def active_meters() -> Meters:
    """The meters of this context, for a backend that reports from another thread."""
    return _active.get()


def record_usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, *, meters: Meters | None = None
) -> None:
    """Add one request's usage to every meter active in this context (or to ``meters``)."""
    for meter in _active.get() if meters is None else meters:
        meter.add(prompt_tokens, completion_tokens, cached_tokens)


def usage_of(usage: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI-shaped ``usage`` object; cached
    tokens are ``prompt_tokens_details.cached_tokens`` where the server reports them, else 0."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached or 0)
