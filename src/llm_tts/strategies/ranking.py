"""How candidates are ranked and the one to return is picked: by score, by a weighted vote, or by
a fitted selector (``tts_selector``: the answer most probably right, with that probability).

Unscored candidates rank last and ties go to the first one, so a run's choice is reproducible
(``llm-tts rescore`` re-applies :func:`select_index` to recorded candidates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from llm_tts.answers import Vote, vote
from llm_tts.selection import CandidateSignals, Selector
from llm_tts.strategies.candidates import Beam


def _rank(score: float | None) -> float:
    return -math.inf if score is None else score  # unscored ranks last


def score_key(beam: Beam) -> float:
    """A beam's score for ranking: unscored beams rank last."""
    return _rank(beam.score)


def best_index(scores: Sequence[float | None]) -> int:
    """Index of the highest score; the first one on a tie (None ranks last)."""
    return max(range(len(scores)), key=lambda i: (_rank(scores[i]), -i))


def best_of(beams: Sequence[Beam]) -> Beam:
    """The highest-scoring beam; the first one on a tie (unscored beams rank last)."""
    return beams[best_index([b.score for b in beams])]


def select_index(
    answers: Sequence[str | None], scores: Sequence[float | None], selection: Literal["best", "weighted"]
) -> tuple[int, Vote | None]:
    """The candidate ``tts_selection`` picks: the best score, or the best candidate of the heaviest
    answer when scores are summed per equivalent answer (with that vote). ``llm-tts rescore``
    applies it to recorded candidates, so a re-score with the run's settings makes the run's choice."""
    if selection == "weighted":
        result = vote(answers, scores, weighted=True)
        return result.selected, result
    return best_index(scores), None


def select_finished(
    beams: Sequence[Beam], selection: Literal["best", "weighted"], selector: Selector | None = None
) -> tuple[Beam, Vote | None, float | None]:
    """The beam to return, marked "selected", with its vote and confidence: by ``selector`` when
    given (and some beam has an answer), else by ``tts_selection`` (:func:`select_index`)."""
    if selector is not None and (picked := select_by(selector, beams)) is not None:
        return picked
    index, result = select_index([b.answer for b in beams], [b.score for b in beams], selection)
    chosen = beams[index]
    chosen.status = "selected"
    return chosen, result, None


def mean_logprob(beam: Beam) -> float | None:
    """Mean token log-probability of a beam's model tokens (free: the backend returned them)."""
    lps = [lp for seg in beam.trajectory.segments if seg.is_model and seg.logprobs for lp in seg.logprobs]
    return sum(lps) / len(lps) if lps else None


def best_score(beams: Sequence[Beam]) -> float | None:
    scores = [b.score for b in beams if b.score is not None]
    return max(scores) if scores else None


def beam_signals(beam: Beam) -> CandidateSignals:
    """What a selector reads of a candidate (:mod:`llm_tts.selection.features`)."""
    finished = (
        beam.finish_reason == "stop"
        and not beam.aborted
        and beam.thinking_finished
        and all(e.status in ("ok", "error") for e in beam.executions)
    )
    return CandidateSignals(beam.answer, beam.score, beam.num_tokens, finished)


def select_by(selector: Selector, beams: Sequence[Beam]) -> tuple[Beam, Vote, float] | None:
    """The beam ``selector`` picks, marked "selected", with the vote it stands in for (candidates
    per answer, the chosen answer's share; group weights are the selector's probabilities) and
    its P(right). None when no beam has an answer (the caller's own rule picks then)."""
    picked = selector.select([beam_signals(b) for b in beams])
    if picked is None:
        return None
    result = Vote(
        selected=picked.index,
        answer=picked.answer,
        distribution={a.answer: len(a.members) for a in picked.answers},
        consensus=picked.share,
        group_weights={a.answer: p for a, p in zip(picked.answers, picked.probabilities)},
    )
    chosen = beams[picked.index]
    chosen.status = "selected"
    return chosen, result, picked.confidence
