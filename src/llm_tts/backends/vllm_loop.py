"""One scheduler thread per vLLM engine: concurrent callers share the engine's batches.

``vllm.LLMEngine`` is not thread-safe, and calling ``LLM.generate`` from several threads would
serialise whole calls. Instead every caller hands its requests to :class:`EngineLoop`, whose
single thread adds all pending requests to the engine and then steps it; requests that arrive
while others are running join the running batch at the next step (continuous batching). The
same loop drives generation (``SamplingParams``) and pooling (``PoolingParams``) engines.

Each request has its own future, resolved as soon as that request finishes (not when the
caller's whole batch does), so a caller can act on early finishers while the rest run; its
``cancel()`` aborts the request in the engine. Turning an engine output into the caller's result
(``convert``) happens in the caller's thread, on ``result()``: the loop thread only steps.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from llm_tts.errors import BackendUnavailableError

log = logging.getLogger(__name__)


_UNCONVERTED = object()


class RequestFuture(Future):
    """One engine request's output, through ``convert`` on the first ``result()``;
    ``cancel()`` also aborts the request in the engine."""

    def __init__(
        self, loop: EngineLoop, request_id: str, convert: Callable[[Any], Any] | None = None, index: int = 0
    ) -> None:
        super().__init__()
        self._loop = loop
        self.request_id = request_id
        self.index = index  # position in its caller's batch (what an updates queue reports)
        self._convert = convert
        self._converted: Any = _UNCONVERTED

    def result(self, timeout: float | None = None) -> Any:
        out = super().result(timeout)
        if self._convert is None:
            return out
        if self._converted is _UNCONVERTED:
            self._converted = self._convert(out)
        return self._converted

    def cancel(self) -> bool:
        if not super().cancel():
            return False  # already finished
        self._loop._queue.put(_Abort(self.request_id))
        return True


@dataclass
class _Job:
    """One caller's batch of requests (counted as one caller in ``peak_callers``)."""

    prompts: Sequence[Any]
    params: Sequence[Any]
    futures: list[RequestFuture]
    pending: int = 0
    updates: queue.SimpleQueue[tuple[int, Any]] | None = None  # every output, finished or not, as (index, output)


@dataclass(frozen=True)
class _Abort:
    request_id: str


class EngineDeadError(BackendUnavailableError):
    """The engine raised inside ``step`` (or was closed); its requests failed and it is not used again."""


class EngineLoop:
    """Owns ``engine`` (an ``LLMEngine``): ``submit`` from any thread, the loop thread steps it."""

    def __init__(
        self, engine: Any, name: str = "vllm-engine-loop", request_error: Callable[[Exception], Exception] | None = None
    ) -> None:
        self.engine = engine
        self._request_error = request_error  # turns the engine's refusal of a request into a typed error
        self._queue: queue.SimpleQueue[_Job | _Abort | None] = queue.SimpleQueue()
        self._ids = itertools.count()
        self._owner: dict[str, tuple[_Job, RequestFuture]] = {}
        self._dead: BaseException | None = None
        self._stopped = False
        self.peak_requests = 0  # most requests in one engine step
        self.peak_callers = 0  # most callers' jobs in one engine step: shows that callers were merged
        self._active_jobs = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        prompts: Sequence[Any],
        params: Sequence[Any],
        convert: Callable[[Any], Any] | None = None,
        updates: queue.SimpleQueue[tuple[int, Any]] | None = None,
    ) -> list[RequestFuture]:
        """Queue one request per prompt; each future gives its request's output, through
        ``convert`` when one is given. With ``updates``, every output the engine gives for these
        requests (each step's, for requests whose output kind streams) is also put there as
        ``(index of the prompt, output)``, so a caller can watch them run and cancel them."""
        if self._dead is not None:
            raise EngineDeadError(
                f"the vLLM engine failed earlier and cannot be used: {self._dead}; create a new backend"
            )
        if self._stopped:
            raise EngineDeadError("the vLLM engine was closed")
        futures = [RequestFuture(self, f"r{next(self._ids)}", convert, i) for i in range(len(prompts))]
        self._queue.put(_Job(prompts, params, futures, updates=updates))
        return futures

    def run(self, prompts: Sequence[Any], params: Sequence[Any]) -> list[Any]:
        return [f.result() for f in self.submit(prompts, params)]

    @property
    def running_requests(self) -> int:
        """Requests of this loop's callers now in the engine (an aborted one leaves at once)."""
        return len(self._owner)

    def close(self) -> None:
        self._stopped = True
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- the loop thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            # Block only when the engine is idle; otherwise take what is waiting and step.
            item = self._queue.get() if not self._owner else self._next_nowait()
            while item is not ...:  # drain everything waiting into the same batch
                if item is None:
                    self._fail_all(EngineDeadError("the vLLM engine was closed"))
                    return
                self._handle(item)
                item = self._next_nowait()
            if self._owner:
                self._step()

    def _next_nowait(self) -> Any:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return ...

    def _handle(self, item: _Job | _Abort) -> None:
        if isinstance(item, _Abort):
            owner = self._owner.pop(item.request_id, None)
            if owner is not None:
                self._settle(owner[0])
                self._abort([item.request_id])
            return
        job = item
        added: list[str] = []
        try:
            for prompt, params, future in zip(job.prompts, job.params, job.futures):
                if future.cancelled():  # cancelled before it reached the engine
                    continue
                self.engine.add_request(future.request_id, prompt, params)
                added.append(future.request_id)
                self._owner[future.request_id] = (job, future)
        except Exception as e:  # noqa: BLE001 - bad input: fail this job only, keep the engine
            for rid in added:
                self._owner.pop(rid, None)
            self._abort(added)
            if self._request_error is not None:
                e = self._request_error(e)
            for future in job.futures:
                _resolve(future, error=e)
            return
        job.pending = len(added)
        if job.pending:
            self._active_jobs += 1

    def _step(self) -> None:
        self.peak_requests = max(self.peak_requests, len(self._owner))
        self.peak_callers = max(self.peak_callers, self._active_jobs)
        try:
            outputs = self.engine.step()
        except BaseException as e:
            log.exception("vLLM engine step failed")
            self._dead = e
            self._fail_all(
                EngineDeadError(
                    f"the vLLM engine failed: {type(e).__name__}: {e}; create a new backend (the log has the engine's error)"
                )
            )
            return
        for out in outputs:
            owner = self._owner.get(out.request_id)
            if owner is None:
                continue
            job, future = owner
            if job.updates is not None:
                job.updates.put((future.index, out))
            if not getattr(out, "finished", False):
                continue
            del self._owner[out.request_id]
            self._settle(job)
            _resolve(future, result=out)

    def _settle(self, job: _Job) -> None:
        """One of ``job``'s requests left the engine."""
        job.pending -= 1
        if job.pending == 0:
            self._active_jobs -= 1

    def _abort(self, request_ids: list[str]) -> None:
        if request_ids:
            try:
                self.engine.abort_request(request_ids)
            except Exception:  # noqa: BLE001 - best effort
                log.warning("could not abort requests %s", request_ids)

    def _fail_all(self, error: BaseException) -> None:
        owners = list(self._owner.values())
        self._owner.clear()
        self._active_jobs = 0
        for _, future in owners:
            _resolve(future, error=error)
        while (item := self._next_nowait()) is not ...:
            if isinstance(item, _Job):
                for future in item.futures:
                    _resolve(future, error=error)


def _resolve(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Set a future's outcome unless its caller cancelled it meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
