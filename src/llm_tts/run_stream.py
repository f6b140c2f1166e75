"""One way to run a planned request off the caller's thread: a stream of progress events ending
in the result, for sync and async consumers alike.

``RunStream.start(engine, plan)`` runs :meth:`TTSEngine.execute` on a worker (an executor the
owner supplies, e.g. the service's pool sized by its slot limit; by default a daemon thread per
run). Iterating the stream, with ``for`` or ``async for``, yields each :class:`ProgressEvent`
where the consumer is (its thread, or its event loop, which never blocks), then the
:class:`TTSResult`; a failed run raises its error there. Both ways share one core: the worker
hands items to a :class:`_Handoff`, which a thread or an event loop waits on.

A consumer that stops early ends the run: :meth:`RunStream.close` (also on leaving ``with``)
cancels it through its :class:`RunControl`, and the worker stops at its next check. A run past
its deadline is left to stop itself with the deadline error.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Self, TypeVar

from llm_tts.engine import TTSEngine, TTSResult
from llm_tts.errors import RunCancelledError
from llm_tts.events import ProgressEvent
from llm_tts.planning import RunPlan
from llm_tts.progress import RunControl

RunEvent = ProgressEvent | TTSResult
T = TypeVar("T")


class ThreadPerRun(Executor):
    """Each task on its own daemon thread, for owners that do not bound their runs (ChatTTS
    in-process). Daemon: a cancelled run that is still between checks never holds up exit."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to whoever reads the future
                future.set_exception(e)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="llm-tts-run", daemon=True).start()
        return future


class _Ended:
    """The last item of a run: its finished future (result, error or cancelled)."""

    def __init__(self, future: Future[TTSResult]) -> None:
        self.future = future


class _Handoff:
    """Items from the worker thread to one consumer, who waits in a thread or on an event loop."""

    def __init__(self, orphaned: Callable[[], None]) -> None:
        self._items: collections.deque[ProgressEvent | _Ended] = collections.deque()
        self._ready = threading.Condition()
        self._wake: Callable[[], None] | None = None  # set while an async consumer waits
        self._orphaned = orphaned  # called when the waiting consumer's event loop has closed

    def put(self, item: ProgressEvent | _Ended) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()
            wake = self._wake
        if wake is not None:
            wake()

    def get(self) -> ProgressEvent | _Ended:
        with self._ready:
            while not self._items:
                self._ready.wait()
            return self._items.popleft()

    def _waker(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event) -> Callable[[], None]:
        def wake() -> None:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop closed under a waiting consumer: nobody listens
                self._orphaned()

        return wake

    async def aget(self) -> ProgressEvent | _Ended:
        """The next item; cancelling the wait loses nothing (the item stays for the next call)."""
        loop = asyncio.get_running_loop()
        while True:
            ready = asyncio.Event()
            wake = self._waker(loop, ready)
            with self._ready:
                if self._items:
                    return self._items.popleft()
                self._wake = wake
            try:
                await ready.wait()
            finally:
                with self._ready:
                    if self._wake is wake:  # a cancelled wait must not unhook the next one
                        self._wake = None


class RunStream:
    """One planned request running on a worker: its progress events, then its result.

    Iterate it once, with ``for`` or ``async for``; close it (or leave ``with``) when done, so a
    run the consumer no longer wants is cancelled.
    """

    def __init__(self, future: Future[TTSResult], handoff: _Handoff, control: RunControl) -> None:
        self._future = future
        self._handoff = handoff
        self.control = control
        self._finished = False  # the result or the error has been handed out

    @classmethod
    def start(
        cls, engine: TTSEngine, plan: RunPlan, *, control: RunControl | None = None, executor: Executor | None = None
    ) -> RunStream:
        """Start running ``plan`` now; raises only if ``executor`` refuses the work."""
        control = control or RunControl()
        handoff = _Handoff(orphaned=control.cancel)
        future = (executor or ThreadPerRun()).submit(engine.execute, plan, progress=handoff.put, control=control)
        # Runs after the worker's last progress event (or at once if the run never started).
        future.add_done_callback(lambda done: handoff.put(_Ended(done)))
        return cls(future, handoff, control)

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the worker) when the run has really ended, however it ended."""
        self._future.add_done_callback(lambda _: callback())

    def when_ended(self, callback: Callable[[Future[TTSResult]], None]) -> None:
        """Call ``callback`` with the run's future (result, error or cancelled) once it has ended."""
        self._future.add_done_callback(callback)

    # -- consuming: one core, a sync and an async shell ---------------------------------------------
    def _deliver(self, item: ProgressEvent | _Ended) -> RunEvent:
        if isinstance(item, ProgressEvent):
            return item
        self._finished = True
        if item.future.cancelled():
            raise RunCancelledError("the run was cancelled before it started (the server is shutting down)")
        return item.future.result()  # raises the run's error

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> RunEvent:
        if self._finished:
            raise StopIteration
        return self._deliver(self._handoff.get())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RunEvent:
        if self._finished:
            raise StopAsyncIteration
        return self._deliver(await self._handoff.aget())

    # -- stopping ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop a run nobody waits for any more (no-op once it has ended). Past its deadline the
        run is left to stop itself with the deadline error."""
        if not self._future.done() and not self.control.past_deadline():
            self.control.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
