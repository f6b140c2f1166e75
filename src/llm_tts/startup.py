"""Start-up progress: one line when a slow step begins, one with its time when it ends.

Converting the embedded model (about 20 s, once) and starting an engine (seconds) would otherwise
be silent. The lines are INFO records of the ``llm_tts.startup`` logger. Where the user has not
configured logging (a script, the ``llm-tts`` command, a notebook) they are written to stderr as
``llm-tts: ...``; otherwise the user's configuration shows them like any other record.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from llm_tts.engine_logs import logging_configured

log = logging.getLogger("llm_tts.startup")
_install_lock = threading.Lock()
_installed = False


class _StderrUnlessConfigured(logging.Handler):
    """Writes to the current ``sys.stderr`` (a notebook swaps it) while nobody configured logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not logging_configured() and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _make_visible() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        handler = _StderrUnlessConfigured()
        handler.setFormatter(logging.Formatter("llm-tts: %(message)s"))
        log.addHandler(handler)
        # INFO must pass the logger itself, unless the user set a level on our loggers.
        if log.level == logging.NOTSET and logging.getLogger("llm_tts").level == logging.NOTSET:
            log.setLevel(logging.INFO)
        _installed = True


@contextmanager
def startup_step(doing: str) -> Iterator[None]:
    """Report ``doing`` (e.g. "starting the vLLM engine") now, and its time when the block ends."""
    _make_visible()
    log.info("%s ...", doing)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        log.info("%s: failed after %.1f s", doing, time.perf_counter() - start)
        raise
    log.info("%s: done in %.1f s", doing, time.perf_counter() - start)
