"""Offline best-of-N: N whole trajectories, each step scored, the best trajectory returned.

All ``tts_num_trajectories`` come from ONE backend call (n = N); each is split into steps at
``tts_step_delimiter`` on token boundaries, every step of every trajectory is scored in ONE
scorer call, and step scores are aggregated with ``tts_score_aggregation`` over the last
``tts_window_size`` steps. ``tts_selection="best"`` returns the highest aggregated score (first
on a tie); ``"weighted"`` is weighted best-of-N: scores are summed per equivalent answer
(:func:`llm_tts.answers.vote` with ``weighted=True``) and the best trajectory of the heaviest
answer is returned.
"""

from __future__ import annotations

from llm_tts.answers import vote
from llm_tts.config import MAX_PATHS
from llm_tts.strategies.base import StrategyContext, StrategyOutcome, best_of, best_score, register_strategy


@register_strategy("offline_bon", size_field="tts_num_trajectories", size_cap=MAX_PATHS)
def offline_bon(ctx: StrategyContext) -> StrategyOutcome:
    trajectories = ctx.sample_full(ctx.config.tts_num_trajectories)
    ctx.score(trajectories)
    result = None
    if ctx.config.tts_selection == "weighted":
        result = vote([t.answer for t in trajectories], [t.score for t in trajectories], weighted=True)
        chosen = trajectories[result.selected]
    else:
        chosen = best_of(trajectories)
    chosen.status = "selected"
    ctx.report(1, 0, len(trajectories), best_score(trajectories), f"scored {len(trajectories)} trajectories")
    return StrategyOutcome(trajectories, chosen, result)
