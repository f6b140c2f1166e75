"""The TTS engine: one entry point that ChatTTS (in-process) and the service both call.

``TTSEngine.run(messages, config)`` renders the chat once to token ids, builds the scorer the
config names, runs the strategy on the backend and returns the selected text with its
``tts_metadata``. The engine never knows which backend it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from llm_tts.backends.base import Backend
from llm_tts.config import TTSConfig
from llm_tts.messages import ChatMessage
from llm_tts.metadata import TTSMetadata
from llm_tts.progress import ProgressCallback, RunControl
from llm_tts.types import Trajectory


@dataclass(frozen=True)
class TTSResult:
    text: str  # the selected completion, as the assistant message content
    finish_reason: Literal["stop", "length"]  # OpenAI meaning
    metadata: TTSMetadata
    trajectory: Trajectory  # token-level record of the selected candidate


class TTSEngine:
    """Runs strategies x scorers on one backend. Thread-safe: no per-request state is kept."""

    def __init__(self, backend: Backend, *, prm_model: str | None = None) -> None:
        self.backend = backend
        self.prm_model = prm_model

    @classmethod
    def create(cls, model: str | None = None, backend: str = "auto", *, prm_model: str | None = None, **backend_options: Any) -> TTSEngine:
        from llm_tts.backends import create_backend

        return cls(create_backend(backend, model, **backend_options), prm_model=prm_model)

    def validate(self, messages: Sequence[ChatMessage], config: TTSConfig) -> None:
        """Raise the typed error a run would raise for bad input, before any generation."""
        raise NotImplementedError  # implemented by the engine issue

    def run(
        self,
        messages: Sequence[ChatMessage],
        config: TTSConfig,
        *,
        progress: ProgressCallback | None = None,
        control: RunControl | None = None,
    ) -> TTSResult:
        raise NotImplementedError  # implemented by the engine issue

    def close(self) -> None:
        self.backend.close()
