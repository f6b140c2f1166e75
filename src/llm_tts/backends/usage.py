"""Token usage as remote APIs report it, collected per run without shared mutable state.

A remote backend calls :func:`record_usage` with each response's ``usage``; whoever wants the
API's own numbers for a run wraps it in ``with metered() as meter:``. The meter lives in a
context variable, so concurrent runs (threads, asyncio tasks) never mix their counts.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator


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


_current: ContextVar[UsageMeter | None] = ContextVar("llm_tts_usage_meter", default=None)


@contextmanager
def metered() -> Iterator[UsageMeter]:
    """Collect the usage every remote request in this context reports."""
    meter = UsageMeter()
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)


def record_usage(prompt_tokens: int, completion_tokens: int) -> None:
    """Add one response's usage to the current meter, if anyone is metering."""
    meter = _current.get()
    if meter is not None:
        meter.add(prompt_tokens, completion_tokens)
