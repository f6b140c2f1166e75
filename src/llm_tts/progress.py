"""Run control: the cancellation and deadline of one run, checked by strategies between steps."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from llm_tts.errors import DeadlineExceededError, RunCancelledError


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

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def check(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelledError("the run was cancelled (client disconnected or caller cancelled)")
        if self.past_deadline():
            raise DeadlineExceededError(
                "the run exceeded its deadline; lower the budget or tts_max_steps, or raise the deadline"
            )
