"""The features of an answer a selector judges, from what a run already has (no forward pass).

A run's candidates are grouped by equivalent answer (:func:`llm_tts.answers.group_answers`);
each group (an *answer*) gets one feature vector, :data:`FEATURE_NAMES` in order:

- ``vote_share``: its candidates' share of all candidates (no-answer ones included);
- ``vote_margin``: its share minus the largest share of any other answer (negative: it trails);
- ``is_plurality``: 1 when no other answer has more candidates;
- ``answers_share``: distinct answers / candidates (1: every candidate disagrees);
- ``score_mean``, ``score_max``, ``score_min``: its candidates' scores (the run's scorer; 0 when
  no candidate of the run was scored, with ``has_scores`` 0);
- ``score_share``: its candidates' summed scores over all scored candidates' (the weighted vote);
- ``length_ratio``: its candidates' mean tokens over the longest candidate's tokens;
- ``finished_share``: the share of its candidates that ran to their own end (not cut by a limit
  or aborted, thinking closed, every code block ran to completion).

The same function serves a run in progress (:class:`CandidateSignals` made from the strategy's
candidates) and a recorded one (made from ``tts_metadata`` candidates), so a selector fitted on
``llm-tts eval`` results sees at inference exactly the features it was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_tts.answers import group_answers
from llm_tts.metadata import CandidateInfo

FEATURE_NAMES: tuple[str, ...] = (
    "vote_share",
    "vote_margin",
    "is_plurality",
    "answers_share",
    "score_mean",
    "score_max",
    "score_min",
    "score_share",
    "has_scores",
    "length_ratio",
    "finished_share",
)


@dataclass(frozen=True, slots=True)
class CandidateSignals:
    """What the features read of one candidate."""

    answer: str | None
    score: float | None
    num_tokens: int
    finished: bool  # ran to its own end: see the module doc


@dataclass(frozen=True, slots=True)
class AnswerFeatures:
    """One distinct answer of a run: its first form, its candidates' indices, its feature vector."""

    answer: str
    members: tuple[int, ...]
    values: tuple[float, ...]  # in FEATURE_NAMES order

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.values))


def signals_of_info(candidate: CandidateInfo) -> CandidateSignals:
    """A recorded candidate's signals (``tts_metadata.candidates[i]``)."""
    finished = (
        candidate.finish_reason == "stop"
        and not candidate.stopped_early
        and candidate.thinking_finished is not False
        and all(e.status in ("ok", "error") for e in candidate.code_executions)
    )
    return CandidateSignals(candidate.answer, candidate.score, candidate.num_tokens, finished)


def answer_features(
    candidates: Sequence[CandidateSignals], equivalent: Callable[[str, str], bool] | None = None
) -> list[AnswerFeatures]:
    """One :class:`AnswerFeatures` per distinct answer, in order of first appearance (none when no
    candidate has an answer)."""
    n = len(candidates)
    groups = group_answers([c.answer for c in candidates], equivalent)
    if not groups:
        return []
    scored = [c.score for c in candidates if c.score is not None and math.isfinite(c.score)]
    total_score = math.fsum(max(0.0, s) for s in scored)
    longest = max((c.num_tokens for c in candidates), default=0) or 1
    sizes = [len(g.members) for g in groups]
    out = []
    for j, g in enumerate(groups):
        members = [candidates[i] for i in g.members]
        scores = [c.score for c in members if c.score is not None and math.isfinite(c.score)]
        others = max((s for k, s in enumerate(sizes) if k != j), default=0)
        values = (
            sizes[j] / n,
            (sizes[j] - others) / n,
            float(sizes[j] >= others),
            len(groups) / n,
            math.fsum(scores) / len(scores) if scores else 0.0,
            max(scores) if scores else 0.0,
            min(scores) if scores else 0.0,
            math.fsum(max(0.0, s) for s in scores) / total_score if total_score > 0 else 0.0,
            float(bool(scored)),
            sum(c.num_tokens for c in members) / len(members) / longest,
            sum(c.finished for c in members) / len(members),
        )
        out.append(AnswerFeatures(g.answer, tuple(g.members), values))
    return out
