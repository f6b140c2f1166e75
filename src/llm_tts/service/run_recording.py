"""Recording every run a request starts, exactly once, however it ends.

A run that answers is recorded with its completion as the answer is built. One that never answers
(its deadline passed, the client left, the server stopped it, it failed) is recorded when both
the response is over and the run has really ended: the engine may still be finishing a backend
call when a 408 has already been sent. Whichever of the two comes second writes the record, with
what the run had made (:class:`~llm_tts.engine.PartialRun`, or its result if nobody took it).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Protocol

from llm_tts.engine import PartialRun, TTSResult
from llm_tts.errors import DeadlineExceededError, LLMTTSError, RunCancelledError
from llm_tts.service.completion_protocol import Completion
from llm_tts.service.protocol import ChatCompletion
from llm_tts.sessions.records import StopReason

log = logging.getLogger("llm_tts.service")


class RunRecorder(Protocol):
    """Where a run's record goes (a session). Called in worker threads."""

    def answered(self, result: TTSResult, completion: ChatCompletion | Completion) -> None: ...

    def unanswered(self, partial: PartialRun | None, stop_reason: StopReason, error: str) -> None: ...


class RecordOnce:
    """One run's recording: :meth:`answered` when its answer is built, :meth:`settle` when the
    response is over, :meth:`run_ended` (a future's done callback) when the run has ended."""

    def __init__(self, recorder: RunRecorder) -> None:
        self._recorder = recorder
        self._lock = threading.Lock()
        self._claimed = False  # recorded, or being recorded
        self._settled = False
        self._client_left = False
        self._ended: Future[TTSResult] | None = None

    def answered(self, result: TTSResult, completion: ChatCompletion | Completion) -> None:
        with self._lock:
            if self._settled:
                return  # the response is over: the answer never reached the client
            self._claimed = True
        self._recorder.answered(result, completion)

    def settle(self, *, client_left: bool = False) -> None:
        """The response is over (sent, failed, or the client left); idempotent."""
        with self._lock:
            if self._settled:
                return
            self._settled, self._client_left = True, client_left
            if self._claimed or self._ended is None:
                return
            self._claimed, ended = True, self._ended
        # on the event loop: the store write goes to a thread of its own
        threading.Thread(target=self._write_unanswered, args=(ended,), daemon=True).start()

    def run_ended(self, future: Future[TTSResult]) -> None:
        with self._lock:
            self._ended = future
            if not self._settled or self._claimed:
                return
            self._claimed = True
        self._write_unanswered(future)

    def _write_unanswered(self, future: Future[TTSResult]) -> None:
        partial: PartialRun | None = None
        reason: StopReason
        if future.cancelled():
            reason, error = "cancelled", "the run was cancelled before it started (the server is stopping)"
        elif (exc := future.exception()) is None:
            result = future.result()
            partial = PartialRun(
                tuple(result.trajectory.prompt_token_ids),
                result.candidate_trajectories or (result.trajectory,),
                result.metadata.strategy,
                result.metadata.scorer,
            )
            reason, error = "disconnect", "the client left before the answer was sent"
        else:
            partial = getattr(exc, "partial_run", None)
            error = str(exc)
            if isinstance(exc, DeadlineExceededError):
                reason = "deadline"
            elif isinstance(exc, RunCancelledError):
                reason = "disconnect" if self._client_left else "cancelled"
            else:
                reason = "error"
        try:
            self._recorder.unanswered(partial, reason, error)
        except LLMTTSError as e:  # the session may be gone or full by now: the request is over anyway
            log.warning("could not record an unanswered run: %s", e)
