"""Progress events and run control shared by the engine, ChatTTS and the service."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from llm_tts.errors import DeadlineExceededError, RunCancelledError


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a search. ChatTTS turns these into LangChain custom events and stream
    chunks; the service into SSE chunks."""

    strategy: str
    step: int  # 1-based step (or 1 for one-shot strategies)
    live_beams: int  # candidates still being extended
    finished: int  # candidates set aside as finished
    best_score: float | None  # best aggregated score so far (higher is better)
    message: str = ""  # a short human-readable line


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class RunControl:
    """Cancellation and deadline for one run; strategies call :meth:`check` between steps."""

    deadline: float | None = None  # time.monotonic() value
    cancelled: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def with_timeout(cls, seconds: float | None) -> RunControl:
        return cls(deadline=None if seconds is None else time.monotonic() + seconds)

    def cancel(self) -> None:
        self.cancelled.set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelledError("the run was cancelled (client disconnected or caller cancelled)")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceededError(
                "the run exceeded its deadline; lower the budget or tts_max_steps, or raise the deadline"
            )
