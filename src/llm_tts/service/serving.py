"""Serving completions, chat and text, without the web framework: a parsed request in, a
response model or a stream of SSE events out, typed errors (``llm_tts.errors``) for everything
that goes wrong. Both kinds run the same way; they differ in how the prompt is planned (a chat
rendered by its template, or a raw prompt) and in the shape of the response and its chunks.

Every request is planned once, off the event loop (bad input is a 4xx before anything is sent,
even for a stream), then runs as a :class:`~llm_tts.run_stream.RunStream` on a worker pool as
large as the slot limit; the run holds its slot until it really ends. The event loop only waits:
for the run's next event, for the client to leave (the run is cancelled) and for the deadline
(the engine stops itself at its next check; after a short grace the request answers 408).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, TypeVar

from llm_tts.backends.base import Backend
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine, TTSResult
from llm_tts.errors import (
    DeadlineExceededError,
    InvalidParameterError,
    LLMTTSError,
    ModelNotFoundError,
    RunCancelledError,
)
from llm_tts.models import EMBEDDED_ALIASES, EMBEDDED_MODEL_NAME
from llm_tts.planning import RunPlan
from llm_tts.progress import RunControl
from llm_tts.run_stream import RunEvent, RunStream
from llm_tts.service.completion_protocol import Completion, CompletionRequest
from llm_tts.service.errors import InternalError, error_body
from llm_tts.service.limits import RunSlots, apply_limits, default_concurrency
from llm_tts.service.metrics import current_observation
from llm_tts.service.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    Health,
    ModelCard,
    ModelList,
    ResponseMessage,
    ServedRequest,
    openai_tool_calls,
)
from llm_tts.service.request_context import ContextExecutor, current_request_id
from llm_tts.service.run_recording import RecordOnce, RunRecorder
from llm_tts.service.settings import ServiceSettings
from llm_tts.service.streaming import DONE, KEEPALIVE, KEEPALIVE_S, ChunkEncoder, ChunkWriter, ResponseHead, sse
from llm_tts.service.text_completion import TextChunkWriter, text_completion
from llm_tts.token_output import token_output

log = logging.getLogger("llm_tts.service")

# The engine checks its own deadline between steps and raises a precise error; the event loop
# gives it this long beyond the deadline before answering 408 itself.
DEADLINE_GRACE_S = 0.5
# tts_anytime: the run answers with its best so far once the deadline passes; choosing it (a vote,
# scoring the last candidates) takes a moment more than raising the deadline error.
ANYTIME_GRACE_S = 5.0

ClientGone = Callable[[], Awaitable[None]]  # returns when the client has closed the connection
R = TypeVar("R", bound=ChatCompletion | Completion)  # the response a request answers with


class ServingChat:
    """Chat and text completions, models and health of one engine under one server's settings."""

    def __init__(self, engine: TTSEngine, settings: ServiceSettings) -> None:
        self.engine = engine
        self.settings = settings
        limit = settings.max_concurrency or default_concurrency(engine.backend)
        self.slots = RunSlots(limit, settings.retry_after_s, settings.queue_size, settings.queue_timeout_s)
        self.started = int(time.time())
        # One worker per slot: a run that holds a slot never waits for a thread.
        # Runs carry their request's context (its id, in their log lines).
        self._executor = ContextExecutor(
            ThreadPoolExecutor(max_workers=self.slots.limit, thread_name_prefix="llm-tts-run")
        )

    def health(self) -> Health:
        backend = self.engine.backend
        return Health(
            model=backend.model_name,
            backend=backend.name,
            active_requests=self.slots.active,
            max_concurrency=self.slots.limit,
            queued_requests=self.slots.queued,
        )

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.engine.backend.model_name, created=self.started)])

    async def create_chat_completion(
        self,
        request: ChatCompletionRequest,
        *,
        path_fields: Mapping[str, str] | None = None,
        client_gone: ClientGone | None = None,
        recorder: RunRecorder | None = None,
    ) -> ChatCompletion | CompletionStream[ChatCompletion]:
        """Answer ``request`` (``path_fields``: TTS fields from the URL path). A streamed request
        returns once its run has started; the caller must close the stream however it ends.
        ``recorder`` (a session's) gets the run's record however it ends (see :mod:`run_recording`)."""
        config = self._config(request, path_fields or {})
        output = request.to_output()
        plan = partial(
            self.engine.plan, request.to_messages(), config, prompt_token_ids=request.prompt_token_ids, output=output
        )
        head = self._head("chatcmpl")
        build = partial(_chat_completion, head=head, config=config, backend=self.engine.backend)
        return await self._serve(request, plan, build, ChunkWriter(*head), client_gone, recorder)

    async def create_completion(
        self,
        request: CompletionRequest,
        *,
        client_gone: ClientGone | None = None,
        recorder: RunRecorder | None = None,
    ) -> Completion | CompletionStream[Completion]:
        """Answer a text completion: its prompt used as it is (no chat template), otherwise as
        :meth:`create_chat_completion`."""
        config = self._config(request, {})
        plan = partial(self.engine.plan_prompt, request.prompt, config)
        head = self._head("cmpl")
        build = partial(text_completion, head=head, config=config, backend=self.engine.backend)
        return await self._serve(request, plan, build, TextChunkWriter(*head), client_gone, recorder)

    def _config(self, request: ServedRequest, path_fields: Mapping[str, str]) -> TTSConfig:
        """The request's checked config (``path_fields``: TTS fields from the URL path), within the
        server's limits."""
        self._check_model(request.model)
        self._check_provider(request.provider)
        config = apply_limits(request.to_config(**_path_overrides(request, path_fields)), self.settings)
        seen = current_observation()
        if seen is not None:
            seen.strategy = config.tts_strategy
        return config

    def _head(self, prefix: str) -> ResponseHead:
        return ResponseHead(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), self.engine.backend.model_name)

    async def _serve(
        self,
        request: ServedRequest,
        plan: Callable[[], RunPlan],
        build: Callable[[TTSResult], R],
        writer: ChunkEncoder[R],
        client_gone: ClientGone | None,
        recorder: RunRecorder | None,
    ) -> R | CompletionStream[R]:
        """Run ``plan`` for ``request`` and answer with what ``build`` makes of its result, or a stream."""
        deadline_s = min(request.tts_deadline or self.settings.deadline_s, self.settings.deadline_s)
        control = RunControl.with_timeout(deadline_s)
        run = await self._start(plan, control, deadline_s)
        anytime = request.tts_anytime
        watch = _RunWatch(run, client_gone or _never, deadline_s, ANYTIME_GRACE_S if anytime else DEADLINE_GRACE_S)
        record = RecordOnce(recorder) if recorder is not None else None
        if record is not None:
            run.when_ended(record.run_ended)
        answer = _Answer(build, record)
        if request.stream:
            return CompletionStream(watch, writer, answer)
        client_left = False
        try:
            with run:
                try:
                    result = await watch.result()
                except RunCancelledError:
                    client_left = True
                    raise
            return await answer.completion(result)
        finally:
            answer.settle(client_left=client_left)

    def close(self) -> None:
        """Stop taking runs; queued ones are cancelled, running ones end at their next check."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _start(self, plan: Callable[[], RunPlan], control: RunControl, wait_s: float | None = None) -> RunStream:
        slot = await self.slots.wait(wait_s)  # queued while every slot is busy; 429 when the queue is full
        try:
            planned = await asyncio.get_running_loop().run_in_executor(self._executor, plan)
            run = RunStream.start(self.engine, planned, control=control, executor=self._executor)
        except BaseException:
            slot.release()
            raise
        run.when_done(slot.release)  # the run owns the slot from here
        return run

    def _served_names(self) -> set[str]:
        name = self.engine.backend.model_name
        names = {name.lower()}
        if name == EMBEDDED_MODEL_NAME:
            names |= {a for a in EMBEDDED_ALIASES if a}
        return names

    def _check_model(self, model: str | None) -> None:
        if model is None or model.strip().lower() in self._served_names():
            return
        served = self.engine.backend.model_name
        raise ModelNotFoundError(
            f"model {model!r} is not served here; this server serves {served!r} (GET /v1/models)", param="model"
        )

    def _check_provider(self, provider: str | None) -> None:
        backend = self.engine.backend.name
        if provider is None or provider in ("auto", backend) or (backend == "openai" and provider == "openrouter"):
            return
        raise InvalidParameterError(
            "provider", provider, f"this server runs the {backend!r} backend; send 'auto' or {backend!r}"
        )


class CompletionStream(Generic[R]):
    """A streamed completion (chat or text) whose run has started: iterate it for its SSE events.
    Whatever ends the response (done, client gone, server stopping, even before the first event),
    ``close`` stops a run still going."""

    def __init__(self, watch: _RunWatch, writer: ChunkEncoder[R], answer: _Answer[R]) -> None:
        self._watch = watch
        self._writer = writer
        self._answer = answer
        self._ended = False  # the answer or an error was sent: the response ended as it should

    def __aiter__(self) -> AsyncIterator[str]:
        return self._events()

    def close(self) -> None:
        self._watch.run.close()
        # a stream that ends before its answer or error was sent: the client left (or the server stops)
        self._answer.settle(client_left=not self._ended)

    async def _events(self) -> AsyncIterator[str]:
        watch, writer = self._watch, self._writer
        try:
            yield sse(writer.opening())
            while True:
                event = await watch.next(KEEPALIVE_S)
                if isinstance(event, TTSResult):
                    break
                if event is _Interrupt.CLIENT_GONE:
                    return
                if event is _Interrupt.QUIET:
                    yield KEEPALIVE
                else:
                    yield sse(writer.progress(event))
            completion = await self._answer.completion(event)
            self._ended = True
            for chunk in writer.answer(event, completion):
                yield sse(chunk)
            yield DONE
        except LLMTTSError as e:
            self._ended = True
            yield sse(error_body(e))
        except Exception as e:  # the stream has begun: report instead of cutting it
            log.error("streamed run failed", exc_info=e)
            self._ended = True
            yield sse(error_body(InternalError("internal server error; the server log has the details")))
        finally:
            watch.stop_watching()
            self.close()


class _Answer(Generic[R]):
    """Builds the response to a finished run and hands both to the run's recording."""

    def __init__(self, build: Callable[[TTSResult], R], record: RecordOnce | None) -> None:
        self.build, self.record = build, record

    async def completion(self, result: TTSResult) -> R:
        if result.metadata.trace is not None:  # the trace names the request it answered
            result.metadata.trace.run.request_id = current_request_id()
        completion = await asyncio.to_thread(self.build, result)
        if self.record is not None:
            await asyncio.to_thread(self.record.answered, result, completion)
        seen = current_observation()
        if seen is not None:
            seen.answered(result, recorded=self.record is not None)
        return completion

    def settle(self, *, client_left: bool = False) -> None:
        if self.record is not None:
            self.record.settle(client_left=client_left)


def _chat_completion(result: TTSResult, *, head: ResponseHead, config: TTSConfig, backend: Backend) -> ChatCompletion:
    """The chat completion of a finished run, with the token output ``config`` asks for."""
    tokens = None
    if config.logprobs or config.return_token_ids:
        tokens = token_output(result.trajectory, backend, config.top_logprobs or 0)
    calls = openai_tool_calls(result.metadata)
    choice = Choice(
        message=ResponseMessage(content=None, tool_calls=calls)
        if calls
        else ResponseMessage(content=result.text, reasoning=result.reasoning, reasoning_content=result.reasoning),
        finish_reason="tool_calls" if calls else result.finish_reason,
        tts_metadata=result.metadata,
        logprobs=tokens.logprobs if tokens is not None and config.logprobs else None,
        token_ids=list(tokens.token_ids) if tokens is not None and config.return_token_ids else None,
    )
    return ChatCompletion(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=[choice],
        usage=result.metadata.usage,
        prompt_token_ids=list(tokens.prompt_token_ids) if tokens is not None and config.return_token_ids else None,
    )


class _Interrupt(enum.Enum):
    QUIET = "no event within the wait"
    CLIENT_GONE = "the client closed the connection"


class _RunWatch:
    """Waits on a run's next event, the client leaving and the deadline (plus grace) at once."""

    def __init__(
        self, run: RunStream, client_gone: ClientGone, deadline_s: float, grace_s: float = DEADLINE_GRACE_S
    ) -> None:
        self.run = run
        self._client_gone = client_gone
        self._deadline_s = deadline_s
        self._gone: asyncio.Future[None] | None = None
        self._end = time.monotonic() + deadline_s + grace_s

    async def next(self, wait_s: float) -> RunEvent | _Interrupt:
        """The run's next event (its error raises here); QUIET if none within ``wait_s``;
        CLIENT_GONE if the client left first. Past the deadline and its grace: the deadline error."""
        if self._gone is None:
            self._gone = asyncio.ensure_future(self._client_gone())
        step = asyncio.ensure_future(anext(self.run))
        step.add_done_callback(_retrieve)
        wait_s = max(0.0, min(wait_s, self._end - time.monotonic()))
        waits: set[asyncio.Future[Any]] = {step, self._gone}
        try:
            done, _ = await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            step.cancel()  # safe: an event that arrives later waits for the next call; no-op once done
        if step in done:
            return step.result()
        if self._gone in done:
            return _Interrupt.CLIENT_GONE
        if time.monotonic() >= self._end:
            raise deadline_error(self._deadline_s)
        return _Interrupt.QUIET

    async def result(self) -> TTSResult:
        """Wait out the run's progress for its result."""
        try:
            while True:
                event = await self.next(self._end - time.monotonic())
                if isinstance(event, TTSResult):
                    return event
                if event is _Interrupt.CLIENT_GONE:
                    raise RunCancelledError("the client disconnected; the run was cancelled")
        finally:
            self.stop_watching()

    def stop_watching(self) -> None:
        if self._gone is not None:
            self._gone.cancel()


def deadline_error(seconds: float) -> DeadlineExceededError:
    return DeadlineExceededError(
        f"the run exceeded its deadline of {seconds:g} s; lower the budget, max_tokens or tts_max_steps, "
        "or raise tts_deadline / the server's --deadline"
    )


def _retrieve(step: asyncio.Future[Any]) -> None:
    # A wait abandoned with its consumer (the response was cancelled) leaves nobody to read the
    # run's error; reading it here keeps asyncio from logging it as never retrieved.
    if not step.cancelled():
        step.exception()


async def _never() -> None:
    await asyncio.get_running_loop().create_future()


def _path_overrides(body: ServedRequest, path_fields: Mapping[str, str]) -> dict[str, str]:
    """Path segments win only when the body does not say something different."""
    for name, value in path_fields.items():
        given = getattr(body, name) if name in body.model_fields_set else None
        if given is not None and given != value:
            raise InvalidParameterError(name, given, f"conflicts with {value!r} in the URL path; send one or the other")
    return dict(path_fields)
