"""Budget forcing (s1): cap each trajectory's thinking, then make the model answer.

When a trajectory's thinking reaches ``tts_thinking_budget`` tokens, the end-of-thinking marker
(and an optional answer cue) is appended as an injected segment (loss mask 0: the model did not
sample it) and the model continues from there with its answer. Whole trajectories are grown in two
batched backend calls: the thinking (stopped at the budget or at the end marker), then the answers
of all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_tts.reasoning.reader import ThinkingReader
from llm_tts.types import Segment, Trajectory

Generate = Callable[[Sequence[Sequence[int]], int, int, Sequence[str]], list[list[Segment]]]
Fit = Callable[[Segment, int], Segment]  # cuts a segment to a token budget, marked "length"
Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class BudgetForcing:
    """One run's budget forcing: the reader, the budget and how the closing text is made."""

    reader: ThinkingReader
    budget: int
    cue: str
    encode: Encode

    @property
    def end_marker(self) -> str:
        marker = self.reader.end_marker
        assert marker is not None  # the engine refuses a budget for a parser without one
        return marker

    def closing(self) -> Segment:
        """The injected segment that ends the thinking: the end marker, then the answer cue."""
        text = self.end_marker + self.cue
        return Segment.injected(self.encode(text), text)

    def may_be_thinking(self, trajectory: Trajectory) -> bool:
        """Still inside its thinking, or nothing written yet (its first tokens may open it)."""
        split = self.reader.split(trajectory.text)
        return not split.finished or not trajectory.text.strip()

    def thinking_left(self, trajectory: Trajectory) -> int | None:
        """Thinking tokens it may still write (None: its thinking is over, no cap applies)."""
        if not self.may_be_thinking(trajectory):
            return None
        return max(0, self.budget - trajectory.num_model_tokens)

    def must_close(self, trajectory: Trajectory) -> bool:
        """Its thinking is open and has used the whole budget: the end marker is due."""
        split = self.reader.split(trajectory.text)
        return not split.finished and trajectory.num_model_tokens >= self.budget

    def grow(
        self, prompt: Trajectory, n: int, max_tokens: int, stop: Sequence[str], generate: Generate, fit: Fit
    ) -> list[tuple[Segment, ...]]:
        """``n`` whole trajectories from ``prompt``, each one's thinking capped at the budget.

        Call 1 samples the thinking, stopped at the end marker or the budget; call 2 continues,
        in one batch, every sample that may answer: those whose thinking ended (naturally, or by
        the injected marker when the budget ran out) and those that never thought but were cut by
        the budget. A sample that ended (EOS, a stop string) stays as it is.
        """
        first = min(max_tokens, self.budget)
        (row,) = generate([prompt.token_ids], n, first, (*stop, self.end_marker))
        grown: list[tuple[Segment, ...]] = []
        todo: list[int] = []
        for seg in row:
            segments: tuple[Segment, ...] = (seg,)
            ended_by_model = seg.finish_reason in ("eos", "abort") or (
                seg.finish_reason == "stop" and seg.stop_text != self.end_marker
            )
            if not ended_by_model and self.must_close(prompt.extend(seg)):
                segments = (seg, self.closing())
            if not ended_by_model and (seg.finish_reason == "stop" or len(segments) == 2 or len(seg) >= first):
                todo.append(len(grown))
            grown.append(segments)
        used = {i: sum(len(s) for s in grown[i] if s.is_model) for i in todo}
        todo = [i for i in todo if used[i] < max_tokens]
        if not todo:
            return grown
        left = [max_tokens - used[i] for i in todo]
        rows = generate([prompt.extend(*grown[i]).token_ids for i in todo], 1, max(left), stop)
        for i, budget, (seg,) in zip(todo, left, rows):
            grown[i] = (*grown[i], fit(seg, budget))
        return grown
