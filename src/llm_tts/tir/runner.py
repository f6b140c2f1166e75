"""Runs many code blocks at once over a sandbox pool: one engine's executor for code."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from llm_tts.sandbox import ExecutionResult, SandboxLimits, SandboxPool

DEFAULT_PARALLEL = 8


@dataclass(frozen=True)
class CodeJob:
    """One block to run after replaying ``history`` (the trajectory's earlier blocks)."""

    code: str
    history: tuple[str, ...]
    timeout: float


class CodeRunner:
    """A sandbox pool and the threads that drive it; thread-safe, shared by an engine's requests."""

    def __init__(
        self,
        pool: SandboxPool | None = None,
        *,
        max_parallel: int = DEFAULT_PARALLEL,
        limits: SandboxLimits | None = None,
    ) -> None:
        # SandboxUnavailableError here when this machine cannot sandbox: never run code without one.
        self.pool = pool or SandboxPool(limits=limits)
        self._threads = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="llm-tts-code")
        self._lock = threading.Lock()

    def run(self, jobs: Sequence[CodeJob]) -> list[ExecutionResult]:
        """Every job's result, in order; all of them run at once (up to ``max_parallel``)."""
        if len(jobs) == 1:
            (job,) = jobs
            return [self.pool.execute(job.code, history=job.history, timeout=job.timeout)]
        futures = [self._threads.submit(self.pool.execute, j.code, history=j.history, timeout=j.timeout) for j in jobs]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        self.pool.close()
