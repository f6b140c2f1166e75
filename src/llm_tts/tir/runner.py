"""Runs many code blocks at once over a sandbox pool: one engine's executor for code."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass

from llm_tts.sandbox import ExecutionResult, SandboxLimits, SandboxPool
from llm_tts.spans import span

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
            return [self._execute(jobs[0])]
        # each in a copy of the caller's context, so its span is the caller's child
        futures = [self._threads.submit(copy_context().run, self._execute, j) for j in jobs]
        return [f.result() for f in futures]

    def _execute(self, job: CodeJob) -> ExecutionResult:
        with span("llm_tts.sandbox", {"llm_tts.code_chars": len(job.code)}) as execution:
            result = self.pool.execute(job.code, history=job.history, timeout=job.timeout)
            execution.set(
                {
                    "llm_tts.sandbox.status": result.status,
                    "llm_tts.sandbox.seconds": result.seconds,
                    "llm_tts.sandbox.output_bytes": result.output_bytes,
                }
            )
        return result

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        self.pool.close()
