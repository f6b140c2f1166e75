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

    def settle(self, prompt: Trajectory, segments: tuple[Segment, ...], first: int) -> tuple[tuple[Segment, ...], bool]:
        """After the thinking call (at most ``first`` tokens, stopped at the end marker): the sample's
        segments, with the closing appended when its thinking used the budget, and whether the model
        answers on from there. A sample the model ended (EOS, a stop string) stays as it is; one that
        stopped at the end marker, was closed, or never thought but was cut by the budget answers on."""
        last = segments[-1]
        if last.is_model and (
            last.finish_reason in ("eos", "abort")
            or (last.finish_reason == "stop" and last.stop_text != self.end_marker)
        ):
            return segments, False
        trajectory = prompt.extend(*segments)
        # cut by the budget (code execution counts its injected outputs against it too)
        cut = not last.is_model or last.finish_reason == "length" or trajectory.num_completion_tokens >= first
        if cut and not self.reader.split(trajectory.text).finished:
            return (*segments, self.closing()), True
        return segments, (last.is_model and last.finish_reason == "stop") or cut

    def grow(
        self,
        prompt: Trajectory,
        n: int,
        max_tokens: int,
        stop: Sequence[str],
        generate: Generate,
        fit: Fit,
        *,
        answer: Generate | None = None,
    ) -> list[tuple[Segment, ...]]:
        """``n`` whole trajectories from ``prompt``, each one's thinking capped at the budget: call 1
        (``generate``) samples the thinking, stopped at the end marker or the budget; call 2
        (``answer``, else ``generate``) continues every sample that answers on (:meth:`settle`), all
        in one batch. A caller watching the samples watches the thinking call."""
        first = min(max_tokens, self.budget)
        (row,) = generate([prompt.token_ids], n, first, (*stop, self.end_marker))
        settled = [self.settle(prompt, (fit(seg, first),), first) for seg in row]
        grown = [segments for segments, _ in settled]
        todo = [i for i, (segments, go) in enumerate(settled) if go and _tokens(segments) < max_tokens]
        if not todo:
            return grown
        left = [max_tokens - _tokens(grown[i]) for i in todo]
        rows = (answer or generate)([prompt.extend(*grown[i]).token_ids for i in todo], 1, max(left), stop)
        for i, budget, (seg,) in zip(todo, left, rows):
            grown[i] = (*grown[i], fit(seg, budget))
        return grown


def _tokens(segments: Sequence[Segment]) -> int:
    return sum(len(s) for s in segments)
