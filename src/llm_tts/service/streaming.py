"""``stream=true``: the server-sent events of OpenAI ``chat.completion.chunk`` objects (a text
completion's chunks, :mod:`llm_tts.service.text_completion`, follow the same order).

Order: a role chunk; one chunk per search progress event (empty content delta, the event in
``choices[0].tts_progress``); the selected answer's content; a last chunk with the
finish_reason, ``tts_metadata`` and ``usage``; then ``data: [DONE]``. The answer is known only
when the search ends, so the content streamed is exactly the final answer. An error after the
stream began is sent as an ``{"error": ...}`` event, which the OpenAI SDK raises as APIError.
This module only encodes; :mod:`llm_tts.service.serving` decides what to send when.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Protocol, TypeVar

from llm_tts.engine import TTSResult
from llm_tts.events import PROGRESS_EVENT_NAME, ProgressEvent, progress_to_json
from llm_tts.service.protocol import ChatCompletion, openai_tool_calls

KEEPALIVE_S = 10.0  # an SSE comment this often keeps proxies from closing a quiet stream
KEEPALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n"


class ResponseHead(NamedTuple):
    """What every chunk of one response, and the response itself, carries."""

    id: str
    created: int
    model: str


R_contra = TypeVar("R_contra", contravariant=True)


class ChunkEncoder(Protocol[R_contra]):
    """The chunks of one streamed response whose finished form is an ``R_contra``."""

    def opening(self) -> dict[str, Any]:
        """The first chunk, sent as soon as the run has started."""
        ...

    def progress(self, event: ProgressEvent) -> dict[str, Any]: ...

    def answer(self, result: TTSResult, completion: R_contra) -> list[dict[str, Any]]:
        """The answer's chunks, then the last chunk with its metadata and usage."""
        ...


class ChunkWriter:
    """Builds the chunks of one chat completion (same id, created and model on every chunk)."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self.head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **choice_extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason, **choice_extra}
        return {**self.head, "choices": [choice]}

    def opening(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": ""})

    def progress(self, event: ProgressEvent) -> dict[str, Any]:
        chunk = self.chunk({"content": ""})
        chunk["choices"][0][PROGRESS_EVENT_NAME] = progress_to_json(event)
        return chunk

    def answer(self, result: TTSResult, completion: ChatCompletion | None = None) -> list[dict[str, Any]]:
        """The selected answer's content (or its tool call, as OpenAI's delta), then the last chunk
        with its metadata and usage. The content chunk carries the completion's token output
        (logprobs, token_ids, prompt_token_ids) when it has any, as vLLM's chunks do."""
        calls = openai_tool_calls(result.metadata)
        finish = "tool_calls" if calls else result.finish_reason
        last = self.chunk({}, finish, tts_metadata=result.metadata.model_dump(mode="json"))
        last["usage"] = result.metadata.usage.model_dump(mode="json")
        if calls:  # OpenAI's tool-call delta: index, id, type and the function's name and arguments
            content = self.chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        else:
            content = self.chunk({"content": result.text})
        thinking = [] if calls or result.reasoning is None else [self.reasoning(result.reasoning)]
        if completion is not None:
            choice = completion.choices[0]
            if choice.logprobs is not None:
                content["choices"][0]["logprobs"] = choice.logprobs.model_dump(mode="json")
            if choice.token_ids is not None:
                content["choices"][0]["token_ids"] = choice.token_ids
            if completion.prompt_token_ids is not None:
                content["prompt_token_ids"] = completion.prompt_token_ids
        return [*thinking, content, last]

    def reasoning(self, thinking: str) -> dict[str, Any]:
        """A reasoning model's thinking, streamed before its answer (vLLM's and DeepSeek's delta names)."""
        return self.chunk({"reasoning": thinking, "reasoning_content": thinking})
