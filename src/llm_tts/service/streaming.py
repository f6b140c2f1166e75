"""``stream=true``: OpenAI ``chat.completion.chunk`` server-sent events.

Order: a role chunk; one chunk per search progress event (empty content delta, the event in
``choices[0].tts_progress``); the selected answer's content; a last chunk with the
finish_reason, ``tts_metadata`` and ``usage``; then ``data: [DONE]``. The answer is known only
when the search ends, so the content streamed is exactly the final answer. An error after the
stream began is sent as an ``{"error": ...}`` event, which the OpenAI SDK raises as APIError.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any, AsyncIterator, Sequence

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSResult
from llm_tts.errors import LLMTTSError
from llm_tts.messages import ChatMessage
from llm_tts.progress import ProgressEvent, RunControl
from llm_tts.service.errors import InternalError, error_body
from llm_tts.service.limits import Slot
from llm_tts.service.runner import DEADLINE_GRACE_S, EngineRunner, deadline_error, wait_for_disconnect

log = logging.getLogger("llm_tts.service")

KEEPALIVE_S = 10.0  # an SSE comment this often keeps proxies from closing a quiet stream
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"data: {data}\n\n"


class ChunkWriter:
    """Builds the chunks of one completion (same id, created and model on every chunk)."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self.head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **choice_extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason, **choice_extra}
        return {**self.head, "choices": [choice]}

    def progress(self, event: ProgressEvent) -> dict[str, Any]:
        return self.chunk({"content": ""}, tts_progress=dataclasses.asdict(event))


def stream_response(
    request: Request,
    runner: EngineRunner,
    slot: Slot,
    messages: Sequence[ChatMessage],
    config: TTSConfig,
    control: RunControl,
    deadline_s: float,
    writer: ChunkWriter,
) -> StreamingResponse:
    """Start the run now (the worker owns the slot from here) and stream its events."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[ProgressEvent | None] = asyncio.Queue()

    def on_progress(event: ProgressEvent) -> None:  # called in the worker thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            pass

    future = runner.start(slot, messages, config, control, on_progress)
    # Progress events are queued before the future completes, so None always comes last.
    future.add_done_callback(lambda _: events.put_nowait(None))
    body = _events(request, future, events, control, deadline_s, writer)
    return _RunResponse(future, control, body, media_type="text/event-stream", headers=SSE_HEADERS)


class _RunResponse(StreamingResponse):
    """Whatever ends the response (done, client gone, server stopping, even before the first
    chunk was pulled), a run still going is told to stop."""

    def __init__(self, future: asyncio.Future[TTSResult], control: RunControl, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._future, self._control = future, control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            abandon(self._future, self._control)


def abandon(future: asyncio.Future[TTSResult], control: RunControl) -> None:
    """Stop a run nobody waits for. Past its deadline it stops itself with the deadline error."""
    if not future.done() and (control.deadline is None or time.monotonic() < control.deadline):
        control.cancel()


async def _events(
    request: Request,
    future: asyncio.Future[TTSResult],
    events: asyncio.Queue[ProgressEvent | None],
    control: RunControl,
    deadline_s: float,
    writer: ChunkWriter,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    disconnect = asyncio.ensure_future(wait_for_disconnect(request))
    end = loop.time() + deadline_s + DEADLINE_GRACE_S
    try:
        yield sse(writer.chunk({"role": "assistant", "content": ""}))
        while True:
            get = asyncio.ensure_future(events.get())
            timeout = max(0.0, min(KEEPALIVE_S, end - loop.time()))
            done, _ = await asyncio.wait({get, disconnect}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
            if disconnect in done:
                control.cancel()
                return
            if get in done:
                event = get.result()
                if event is None:
                    break
                yield sse(writer.progress(event))
            elif loop.time() >= end:
                raise deadline_error(deadline_s)
            else:
                yield ": keep-alive\n\n"
        result = future.result()
        yield sse(writer.chunk({"content": result.text}))
        last = writer.chunk({}, result.finish_reason, tts_metadata=result.metadata.model_dump(mode="json"))
        last["usage"] = result.metadata.usage.model_dump(mode="json")
        yield sse(last)
        yield sse("[DONE]")
    except LLMTTSError as e:
        yield sse(error_body(e))
    except Exception as e:  # noqa: BLE001 - the stream has begun; report instead of cutting it
        log.error("streamed run failed", exc_info=e)
        yield sse(error_body(InternalError("internal server error; the server log has the details")))
    finally:
        disconnect.cancel()
        abandon(future, control)
