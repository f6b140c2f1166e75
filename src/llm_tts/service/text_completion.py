"""A text completion's response and stream chunks (``/v1/completions``, vLLM's shape).

The text is the selected trajectory's whole text (a reasoning model's thinking included, as
vLLM's completions return it), so it is exactly what its ``token_ids`` decode to. The stream
follows the chat stream's order (:mod:`llm_tts.service.streaming`) in ``text_completion`` chunks:
an empty opening chunk; one per search progress event (empty text, the event in
``choices[0].tts_progress``); the text with its token output on the choice (``logprobs``,
``token_ids``, ``prompt_token_ids``, where vLLM puts them); a last chunk with the
``finish_reason``, ``tts_metadata`` and ``usage``; then ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Any

from llm_tts.backends.base import Backend
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSResult
from llm_tts.events import PROGRESS_EVENT_NAME, ProgressEvent, progress_to_json
from llm_tts.service.completion_protocol import Completion, CompletionChoice, CompletionLogprobs
from llm_tts.service.streaming import ResponseHead
from llm_tts.token_output import token_output


def text_completion(result: TTSResult, *, head: ResponseHead, config: TTSConfig, backend: Backend) -> Completion:
    """The text completion of a finished run, with the token output ``config`` asks for."""
    tokens = None
    if config.logprobs or config.return_token_ids:
        tokens = token_output(result.trajectory, backend, config.top_logprobs or 0)
    logprobs = tokens.logprobs if tokens is not None and config.logprobs else None
    ids = tokens if tokens is not None and config.return_token_ids else None
    choice = CompletionChoice(
        text=result.trajectory.text,
        logprobs=CompletionLogprobs.of(logprobs) if logprobs is not None else None,
        finish_reason=result.finish_reason,
        tts_metadata=result.metadata,
        prompt_token_ids=list(ids.prompt_token_ids) if ids is not None else None,
        token_ids=list(ids.token_ids) if ids is not None else None,
    )
    return Completion(id=head.id, created=head.created, model=head.model, choices=[choice], usage=result.metadata.usage)


class TextChunkWriter:
    """Builds the chunks of one text completion (same id, created and model on every chunk)."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self.head = {"id": completion_id, "object": "text_completion", "created": created, "model": model}

    def chunk(self, text: str, finish_reason: str | None = None, **choice_extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason, **choice_extra}
        return {**self.head, "choices": [choice]}

    def opening(self) -> dict[str, Any]:
        return self.chunk("")

    def progress(self, event: ProgressEvent) -> dict[str, Any]:
        chunk = self.chunk("")
        chunk["choices"][0][PROGRESS_EVENT_NAME] = progress_to_json(event)
        return chunk

    def answer(self, result: TTSResult, completion: Completion) -> list[dict[str, Any]]:
        """The text with its token output, then the last chunk with the metadata and usage."""
        choice = completion.choices[0]
        extra = choice.model_dump(mode="json", include={"logprobs", "prompt_token_ids", "token_ids"}, exclude_none=True)
        content = self.chunk(choice.text, **extra)
        last = self.chunk("", choice.finish_reason, tts_metadata=choice.tts_metadata.model_dump(mode="json"))
        last["usage"] = completion.usage.model_dump(mode="json")
        return [content, last]
