"""Offline best-of-N: N whole trajectories, each step scored, the answer chosen by a weighted vote.

All ``tts_num_trajectories`` come from ONE backend call (n = N); each is split into steps at
``tts_step_delimiter`` on token boundaries, every step of every trajectory is scored in ONE
scorer call, and step scores are aggregated with ``tts_score_aggregation`` over the last
``tts_window_size`` steps. ``tts_selection="weighted"`` (the default) is weighted best-of-N:
scores are summed per equivalent answer (:func:`llm_tts.answers.vote` with ``weighted=True``)
and the best trajectory of the heaviest answer is returned; ``"best"`` returns the highest
aggregated score (first on a tie), which loses to the vote when the scorer is weak (docs/benchmarks.md).

With ``tts_stop_confidence`` the trajectories are sampled in waves and sampling stops once the
weighted vote is settled (:mod:`llm_tts.strategies.stopping`); aborted ones are "pruned".
With ``tts_route`` they are sampled in increasing sizes while unsure (:mod:`llm_tts.strategies.routing`).
"""

from __future__ import annotations

from llm_tts.config import MAX_PATHS, ROUTED_FIELDS, SCORED_FIELDS, SELECTING_FIELDS
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.ranking import best_score
from llm_tts.strategies.registry import register_strategy
from llm_tts.strategies.routing import sample_routed
from llm_tts.strategies.stopping import sample_until_settled


@register_strategy(
    "offline_bon",
    size_field="tts_num_trajectories",
    size_cap=MAX_PATHS,
    fields=("tts_stop_confidence", *SCORED_FIELDS, *SELECTING_FIELDS, *ROUTED_FIELDS),
)
def offline_bon(ctx: StrategyContext) -> StrategyOutcome:
    c = ctx.config
    if c.tts_route is not None:
        trajectories = sample_routed(ctx, c.tts_route)
    elif c.tts_stop_confidence is None:
        trajectories = ctx.sample_full(c.tts_num_trajectories)
    else:
        trajectories = sample_until_settled(ctx, c.tts_num_trajectories, c.tts_stop_confidence, weighted=True)
    voters = [t for t in trajectories if not t.aborted]
    aborted = [t for t in trajectories if t.aborted]
    for t in aborted:
        t.status = "pruned"
    trajectories = voters or aborted  # aborted ones are chosen from only when none finished
    ctx.score(trajectories)
    chosen, result = ctx.select(trajectories)
    ctx.report(1, 0, len(trajectories), best_score(trajectories), f"scored {len(trajectories)} trajectories")
    return StrategyOutcome(trajectories + (aborted if voters else []), chosen, result)
