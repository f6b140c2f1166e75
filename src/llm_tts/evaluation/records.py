"""One row of ``results.jsonl``: a question answered by one configuration, with everything needed
to score it again later (every candidate's text, answer, tokens, step scores, score and status)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llm_tts.answers import answers_equivalent
from llm_tts.metadata import TTSMetadata

RowKey = tuple[str, str, int | None]  # (question id, configuration name, seed)


class ResultRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question_id: str
    configuration: str = Field(description="strategy label and budget, e.g. 'beam_search:tts_scorer=entropy@4'")
    strategy: str = Field(description="strategy label: one line of the accuracy plot")
    budget: int | None = Field(description="tts_budget; None for greedy")
    seed: int | None
    config: dict[str, Any] = Field(description="the request's TTS config with the budget applied (every field)")
    gold: str = Field(description="the reference answer")
    selected_answer: str | None
    correct: bool
    seconds: float = Field(description="wall time of this request")
    metadata: TTSMetadata | None = Field(None, description="tts_metadata of the run; None when it failed")
    error: str | None = Field(None, description="why the run failed; a failed row is retried on resume")

    @property
    def key(self) -> RowKey:
        return (self.question_id, self.configuration, self.seed)

    @property
    def generated_tokens(self) -> int:
        return self.metadata.usage.completion_tokens if self.metadata else 0

    @property
    def flops(self) -> float | None:
        """The run's estimated FLOPs (``tts_metadata.cost.flops``); None when unknown or failed."""
        return self.metadata.cost.flops if self.metadata else None


def is_correct(selected_answer: str | None, gold: str) -> bool:
    """The votes' own rule: mathematical equivalence, else normalised text."""
    return selected_answer is not None and answers_equivalent(selected_answer, gold)
