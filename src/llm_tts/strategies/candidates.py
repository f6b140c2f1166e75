"""The candidate record every strategy works on: a :class:`Beam` and how it reads.

A beam is a trajectory with its steps, their scores and how it ended; its answer is read from
its text (never from its thinking, nor from before a code block's output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from llm_tts.answers import extract_answer, has_final_answer
from llm_tts.metadata import CodeExecutionInfo
from llm_tts.reasoning import ThinkingReader, ThinkingSplit
from llm_tts.types import Step, Trajectory, text_after_injected

Status = Literal["selected", "kept", "pruned"]


@dataclass
class Beam:
    """One candidate: its trajectory, its steps and their scores, and how it ended."""

    trajectory: Trajectory
    steps: list[Step] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    score: float | None = None  # aggregated step scores (None: not scored)
    finished: bool = False  # cannot or need not be continued
    finish_reason: Literal["stop", "length"] = "stop"  # OpenAI meaning: "length" = cut by a limit
    truncated_steps: int = 0  # steps cut by tts_step_max_tokens (marked, not silently cut)
    status: Status = "kept"
    resampled: int = 0  # particle_filtering: draws this lineage received at resampling
    executions: list[CodeExecutionInfo] = field(default_factory=list)  # code_execution: blocks along it
    reader: ThinkingReader | None = None  # reasoning models: tells the thinking from the answer
    # the last split and the trajectory it is of: a beam is read many times between extensions
    split_cache: tuple[Trajectory, ThinkingSplit] | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return self.trajectory.text

    @property
    def answer(self) -> str | None:
        # A text cut by a limit never reached its conclusion: only an answer it stated counts,
        # not the last number it happened to write ("the sum of the sum of 7").
        if self.finish_reason == "length" and not has_final_answer(self.answer_text):
            return None
        if not self.thinking_finished:
            return None  # it ended inside its thinking: no answer, whatever numbers it wrote there
        return extract_answer(self.answer_text)

    @property
    def answer_text(self) -> str:
        """Where the answer is: the answer part (never the thinking), after the last injected output."""
        tail = text_after_injected(self.trajectory.segments)
        split = self.thinking_split
        if split is None or not split.has_thinking:
            return tail
        return tail if len(tail) < len(split.answer) else split.answer

    @property
    def thinking_split(self) -> ThinkingSplit | None:
        """The completion split into thinking and answer (None: thinking is not parsed)."""
        if self.reader is None:
            return None
        if self.split_cache is None or self.split_cache[0] is not self.trajectory:
            self.split_cache = (self.trajectory, self.reader.split(self.text))
        return self.split_cache[1]

    @property
    def thinking_finished(self) -> bool:
        """False while (or when) the completion is inside its thinking."""
        split = self.thinking_split
        return split is None or split.finished

    @property
    def num_tokens(self) -> int:
        return self.trajectory.num_completion_tokens

    @property
    def aborted(self) -> bool:
        """Its last segment was stopped mid-generation (a stopping rule, the budget, the deadline)."""
        return self.trajectory.finish_reason == "abort"


def dedupe(beams: Sequence[Beam]) -> list[Beam]:
    """Drop beams whose completion token ids repeat an earlier beam's (first one kept)."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for b in beams:
        key = b.trajectory.completion_token_ids
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out
