"""A pool of warm sandboxes, and how a trajectory's state is kept without sharing one.

Warm: ``size`` workers are started ahead of time (bwrap, namespaces, the interpreter and its
imports), so an execution takes one that is already waiting; taking one starts its replacement
at once, in the background. Every sandbox is started by the pool's own long-lived thread:
``--die-with-parent`` ties a sandbox to the *thread* that started it, and a request's thread
ends with the request.

State: a worker runs exactly one execution and is then killed, so no execution ever sees
another's memory, files or processes. A trajectory's state (a variable its first block set,
visible in its second) is rebuilt by *replaying* its earlier blocks in the fresh worker with
their output thrown away; the caller passes that history. Branches of a search that share a
prefix therefore share nothing at run time: each replays the same prefix in its own sandbox.
The cost: the k-th block of a trajectory re-runs the k-1 before it (at most
``max_code_executions`` blocks, so a quadratic but small number of block runs), and a block
that depends on the outside changing (the clock, os.urandom) can rebuild a slightly different
state; ``random`` is seeded the same in every sandbox so a replay of it is exact.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from llm_tts.errors import InvalidParameterError
from llm_tts.sandbox.bwrap import SandboxImage, SandboxLimits, check_sandbox
from llm_tts.sandbox.worker import ExecutionResult, Worker

DEFAULT_POOL_SIZE = 4


class SandboxPool:
    """Thread-safe: many threads may :meth:`execute` at once (one worker each)."""

    def __init__(
        self,
        size: int = DEFAULT_POOL_SIZE,
        *,
        limits: SandboxLimits | None = None,
        image: SandboxImage | None = None,
    ) -> None:
        if size < 0:
            raise InvalidParameterError("size", size, "must be >= 0 (0: a cold sandbox for every execution)")
        self.size = size
        self.limits = limits or SandboxLimits()
        self.image = image or SandboxImage.current()
        check_sandbox(self.image)  # SandboxUnavailableError here, never an unsandboxed fallback
        self._idle: deque[Future[Worker]] = deque()
        self._lock = threading.Lock()
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-tts-sandbox-spawn")
        self._closed = False
        with self._lock:
            self._fill()

    def execute(self, code: str, *, history: Sequence[str] = (), timeout: float = 10.0) -> ExecutionResult:
        """Run ``code`` after silently replaying ``history`` (the trajectory's earlier blocks)."""
        if not timeout > 0:
            raise InvalidParameterError("timeout", timeout, "must be > 0 seconds")
        return self._take().run(code, list(history), timeout)

    def _take(self) -> Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox pool is closed")
            worker = self._idle.popleft() if self._idle else self._spawn()  # pool empty: a cold one
            self._fill()
        return worker.result()

    def _spawn(self) -> Future[Worker]:
        return self._spawner.submit(Worker, self.image, self.limits)

    def _fill(self) -> None:
        while len(self._idle) < self.size:
            self._idle.append(self._spawn())

    def idle_pids(self) -> list[int]:
        """Process ids (bwrap's, on the host) of the workers waiting in the pool."""
        with self._lock:
            return [w.result().process.pid for w in self._idle]

    def close(self) -> None:
        """Kill the idle workers; executions in flight finish (each kills its own worker)."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
        for w in idle:
            w.result().kill()
        self._spawner.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
