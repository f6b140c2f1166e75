"""Runs the engine off the event loop, and ends runs whose client left or whose deadline passed.

``TTSEngine.run`` is blocking (a strategy is many backend calls), so each run goes to a worker
thread; the event loop only waits on its future, so other requests keep being served. A run
that is abandoned (client disconnected, deadline) is told to stop through its RunControl; the
thread notices at its next check and frees its slot then.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from starlette.requests import Request

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine, TTSResult
from llm_tts.errors import DeadlineExceededError, RunCancelledError
from llm_tts.messages import ChatMessage
from llm_tts.progress import ProgressCallback, RunControl
from llm_tts.service.limits import RunSlots, Slot

# The engine checks its own deadline between steps and raises a precise error; the event loop
# gives it this long beyond the deadline before answering 408 itself.
DEADLINE_GRACE_S = 0.5


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def deadline_error(seconds: float) -> DeadlineExceededError:
    return DeadlineExceededError(
        f"the run exceeded its deadline of {seconds:g} s; lower the budget, max_tokens or tts_max_steps, "
        "or raise tts_deadline / the server's --deadline"
    )


def disconnect_error() -> RunCancelledError:
    return RunCancelledError("the client disconnected; the run was cancelled")


class EngineRunner:
    """One engine, a worker pool as large as the slot limit, and the slots themselves."""

    def __init__(self, engine: TTSEngine, slots: RunSlots) -> None:
        self.engine = engine
        self.slots = slots
        self.executor = ThreadPoolExecutor(max_workers=slots.limit, thread_name_prefix="llm-tts-run")

    async def validate(self, messages: Sequence[ChatMessage], config: TTSConfig) -> None:
        """The engine's up-front checks (may build a scorer), off the event loop."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.engine.validate, messages, config)

    def start(
        self,
        slot: Slot,
        messages: Sequence[ChatMessage],
        config: TTSConfig,
        control: RunControl,
        progress: ProgressCallback | None = None,
    ) -> asyncio.Future[TTSResult]:
        """Start the run in a worker; the slot is released when the worker finishes."""

        def work() -> TTSResult:
            try:
                return self.engine.run(messages, config, progress=progress, control=control)
            finally:
                slot.release()

        try:
            future = asyncio.get_running_loop().run_in_executor(self.executor, work)
        except BaseException:
            slot.release()
            raise
        future.add_done_callback(_consume_exception)
        return future

    async def result(self, request: Request, future: asyncio.Future[TTSResult], control: RunControl, deadline_s: float) -> TTSResult:
        """Wait for the run, or cancel it when the client leaves or the deadline passes."""
        disconnect = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait(
                {future, disconnect}, timeout=deadline_s + DEADLINE_GRACE_S, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            control.cancel()
            raise
        finally:
            disconnect.cancel()
        if future in done:
            return future.result()
        if disconnect in done:
            control.cancel()
            raise disconnect_error()
        # No cancel needed: the control carries the same deadline, the run stops at its next check.
        raise deadline_error(deadline_s)

    @property
    def active(self) -> int:
        return self.slots.active

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _consume_exception(future: asyncio.Future[TTSResult]) -> None:
    # An abandoned run's error has no reader; fetching it keeps asyncio from logging it.
    if not future.cancelled():
        future.exception()
