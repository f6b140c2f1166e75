"""One scheduler thread per vLLM engine: concurrent callers share the engine's batches.

``vllm.LLMEngine`` is not thread-safe, and calling ``LLM.generate`` from several threads would
serialise whole calls. Instead every caller hands its requests to :class:`EngineLoop`, whose
single thread adds all pending requests to the engine and then steps it; requests that arrive
while others are running join the running batch at the next step (continuous batching). The
same loop drives generation (``SamplingParams``) and pooling (``PoolingParams``) engines.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """One caller's batch: all its requests finish before its future resolves."""

    prompts: Sequence[Any]
    params: Sequence[Any]
    future: Future = field(default_factory=Future)
    outputs: list[Any] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    pending: int = 0


class EngineDeadError(RuntimeError):
    """The engine raised inside ``step``; its requests were failed and it is not used again."""


class EngineLoop:
    """Owns ``engine`` (an ``LLMEngine``): ``submit`` from any thread, the loop thread steps it."""

    def __init__(self, engine: Any, name: str = "vllm-engine-loop") -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ids = itertools.count()
        self._owner: dict[str, tuple[_Job, int]] = {}
        self._dead: BaseException | None = None
        self._stopped = False
        self.peak_requests = 0  # most requests in one engine step
        self.peak_callers = 0  # most callers' jobs in one engine step: shows that callers were merged
        self._active_jobs = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, prompts: Sequence[Any], params: Sequence[Any]) -> Future:
        """Queue one request per prompt; the future gives their final outputs, in order."""
        if self._dead is not None:
            raise EngineDeadError(f"the vLLM engine failed earlier and cannot be used: {self._dead}")
        if self._stopped:
            raise EngineDeadError("the vLLM engine was closed")
        job = _Job(prompts, params)
        self._queue.put(job)
        return job.future

    def run(self, prompts: Sequence[Any], params: Sequence[Any]) -> list[Any]:
        return self.submit(prompts, params).result()

    def close(self) -> None:
        self._stopped = True
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- the loop thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            busy = bool(self._owner)
            try:
                # Block only when the engine is idle; otherwise take what is waiting and step.
                job = self._queue.get() if not busy else self._queue.get_nowait()
            except queue.Empty:
                job = ...  # type: ignore[assignment]
            if job is None:
                self._fail_all(EngineDeadError("the vLLM engine was closed"))
                return
            if job is not ...:
                self._add(job)
                while True:  # drain everything else that is waiting into the same batch
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._fail_all(EngineDeadError("the vLLM engine was closed"))
                        return
                    self._add(more)
            if self._owner:
                self._step()

    def _add(self, job: _Job) -> None:
        job.outputs = [None] * len(job.prompts)
        try:
            for i, (prompt, params) in enumerate(zip(job.prompts, job.params)):
                rid = f"r{next(self._ids)}"
                self.engine.add_request(rid, prompt, params)
                job.ids.append(rid)
                self._owner[rid] = (job, i)
                job.pending += 1
        except BaseException as e:  # noqa: BLE001 - bad input: fail this job only, keep the engine
            self._abort(job)
            job.future.set_exception(e)
            return
        if job.pending == 0:
            job.future.set_result([])
        else:
            self._active_jobs += 1

    def _step(self) -> None:
        self.peak_requests = max(self.peak_requests, len(self._owner))
        self.peak_callers = max(self.peak_callers, self._active_jobs)
        try:
            outputs = self.engine.step()
        except BaseException as e:  # noqa: BLE001 - the engine is broken; fail everyone, stop using it
            log.exception("vLLM engine step failed")
            self._dead = e
            self._fail_all(EngineDeadError(f"the vLLM engine failed: {type(e).__name__}: {e}"))
            return
        for out in outputs:
            if not getattr(out, "finished", False):
                continue
            owner = self._owner.pop(out.request_id, None)
            if owner is None:
                continue
            job, i = owner
            job.outputs[i] = out
            job.pending -= 1
            if job.pending == 0 and not job.future.done():
                self._active_jobs -= 1
                job.future.set_result(job.outputs)

    def _abort(self, job: _Job) -> None:
        for rid in job.ids:
            self._owner.pop(rid, None)
        if job.ids:
            try:
                self.engine.abort_request(job.ids)
            except Exception:  # noqa: BLE001 - best effort
                log.warning("could not abort requests %s", job.ids)

    def _fail_all(self, error: BaseException) -> None:
        jobs = {id(j): j for j, _ in self._owner.values()}
        self._owner.clear()
        self._active_jobs = 0
        for job in jobs.values():
            if not job.future.done():
                job.future.set_exception(error)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and not job.future.done():
                job.future.set_exception(error)
