"""Token usage as remote APIs report it, collected per run without shared mutable state.

A remote backend calls :func:`record_usage` with each response's ``usage``; whoever wants the
API's own numbers for a run wraps it in ``with metered() as meter:``. The meter lives in a
context variable, so concurrent runs (threads, asyncio tasks) never mix their counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class UsageMeter:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.requests += 1


# Meters nest (the engine meters each run; a caller may meter several runs): all active ones count.
_active: ContextVar[tuple[UsageMeter, ...]] = ContextVar("llm_tts_usage_meters", default=())


@contextmanager
def metered() -> Iterator[UsageMeter]:
    """Collect the usage every remote request in this context reports."""
    meter = UsageMeter()
    token = _active.set((*_active.get(), meter))
    try:
        yield meter
    finally:
        _active.reset(token)


def record_usage(prompt_tokens: int, completion_tokens: int) -> None:
    """Add one response's usage to every meter active in this context."""
    for meter in _active.get():
        meter.add(prompt_tokens, completion_tokens)
