"""What one ChatTTS run yields, in the same shape from the in-process engine and the service.

A run is a sequence of :class:`~llm_tts.events.ProgressEvent` (the search as it happens),
:class:`TextDelta` (answer text, when the service streams it in pieces) and one final
:class:`Reply`. ChatTTS turns that sequence into LangChain messages, chunks and custom events,
whichever face produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from llm_tts.engine import TTSResult
from llm_tts.events import ProgressEvent
from llm_tts.metadata import TTSMetadata
from llm_tts.token_output import TokenOutput


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the selected answer's thinking (reasoning models), streamed before its text."""

    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the selected answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The finished run: the selected answer with its metadata and real token usage."""

    text: str
    finish_reason: str
    tts_metadata: dict[str, Any]  # TTSMetadata as JSON: the same keys in every face
    model_name: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    # Token in, token out: set when the call asked for logprobs or return_token_ids.
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[dict[str, Any]] | None = None  # OpenAI's logprobs.content entries, each with token_id
    reasoning: str | None = None  # reasoning models: the selected answer's thinking (text is its answer part)
    reasoning_tokens: int = 0  # thinking tokens of the candidates (usage's completion_tokens_details)

    @classmethod
    def from_result(cls, result: TTSResult) -> Reply:
        return cls.from_metadata(result.text, result.finish_reason, result.metadata)

    def with_tokens(self, tokens: TokenOutput) -> Reply:
        content = None if tokens.logprobs is None else tokens.logprobs.model_dump(mode="json")["content"]
        return replace(
            self, prompt_token_ids=list(tokens.prompt_token_ids), token_ids=list(tokens.token_ids), logprobs=content
        )

    @classmethod
    def from_metadata(
        cls, text: str, finish_reason: str, metadata: TTSMetadata, model_name: str | None = None
    ) -> Reply:
        usage = metadata.usage
        selected = next((c for c in metadata.candidates if c.status == "selected"), None)
        return cls(
            reasoning=selected.reasoning if selected is not None else None,
            reasoning_tokens=usage.completion_tokens_details.reasoning_tokens,
            text=text,
            finish_reason=finish_reason,
            tts_metadata=metadata.model_dump(mode="json"),
            model_name=model_name or metadata.model,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


RunItem = ProgressEvent | ReasoningDelta | TextDelta | Reply
