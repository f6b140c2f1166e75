"""How far an evaluation is: a progress bar on a terminal, plain log lines elsewhere (CI, a file).

Both show questions done of the total, generated tokens, accuracy so far and the time left,
estimated from this run's pace (rows found done on resume are counted but not timed).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from llm_tts.evaluation.records import ResultRow

_BAR_WIDTH = 24
_LOG_EVERY_S = 15.0  # plain mode: at most one line this often, plus one per tenth of the work


class EvalProgress:
    def __init__(
        self, total: int, already_done: int = 0, *, stream: TextIO | None = None, terminal: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.total = total
        self.done = already_done
        self.new = 0
        self.correct = 0
        self.scored = 0
        self.errors = 0
        self.tokens = 0
        self.started = time.monotonic()
        self._last_log = 0.0
        self._last_tenth = -1

    def update(self, row: ResultRow) -> None:
        self.done += 1
        self.new += 1
        self.tokens += row.generated_tokens
        if row.error is not None:
            self.errors += 1
        else:
            self.scored += 1
            self.correct += row.correct
        self._show()

    def line(self) -> str:
        acc = f"{self.correct / self.scored:.3f}" if self.scored else "-"
        errors = f" | {self.errors} failed" if self.errors else ""
        return (
            f"{self.done}/{self.total} done | {_tokens(self.tokens)} tokens | accuracy {acc}"
            f"{errors} | {_duration(time.monotonic() - self.started)} elapsed, ETA {self._eta()}"
        )

    def _eta(self) -> str:
        left = self.total - self.done
        if left <= 0:
            return "0s"
        if not self.new:
            return "?"
        return _duration((time.monotonic() - self.started) / self.new * left)

    def _show(self) -> None:
        if self.terminal:
            filled = int(_BAR_WIDTH * self.done / max(1, self.total))
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
            self.stream.flush()
            return
        tenth = 10 * self.done // max(1, self.total)
        now = time.monotonic()
        if tenth != self._last_tenth or now - self._last_log >= _LOG_EVERY_S or self.done == self.total:
            self._last_tenth, self._last_log = tenth, now
            self.stream.write(f"llm-tts eval: {self.line()}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.terminal and self.new:
            self.stream.write("\n")
            self.stream.flush()


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
