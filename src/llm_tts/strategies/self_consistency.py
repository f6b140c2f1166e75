"""Self-consistency: N independent paths, majority vote over mathematically equivalent answers.

All ``num_paths`` paths come from ONE backend call (n = num_paths). Answers are extracted and
grouped by :func:`llm_tts.answers.vote`. Ties between equally large groups go to the group with
the best-scoring member, then to the group seen first. The score is the configured scorer's
aggregated score when one is given (e.g. ``tts_scorer="entropy"``); with the default
``majority_vote`` it is the path's mean token log-probability (free: the backend returned it),
used only to break ties and pick the path returned within the winning group (it is not
reported as a score, since no scorer ran).
"""

from __future__ import annotations

from llm_tts.answers import vote
from llm_tts.config import MAX_PATHS
from llm_tts.strategies.base import Beam, StrategyContext, StrategyOutcome, register_strategy


@register_strategy("self_consistency", size_field="num_paths", size_cap=MAX_PATHS, needs_scorer=False)
def self_consistency(ctx: StrategyContext) -> StrategyOutcome:
    paths = ctx.sample_full(ctx.config.num_paths)
    ctx.score(paths)
    tie_break = [p.score if ctx.scorer else mean_logprob(p) for p in paths]
    result = vote([p.answer for p in paths], tie_break)
    chosen = paths[result.selected]
    chosen.status = "selected"
    ctx.report(1, 0, len(paths), chosen.score, f"{len(result.distribution)} distinct answers")
    return StrategyOutcome(paths, chosen, result)


def mean_logprob(beam: Beam) -> float | None:
    lp = beam.trajectory.segments[0].logprobs
    return sum(lp) / len(lp) if lp else None
