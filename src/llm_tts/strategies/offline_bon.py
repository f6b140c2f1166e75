"""Offline best-of-N: N whole trajectories, each step scored, the answer chosen by a weighted vote.

All ``tts_num_trajectories`` come from ONE backend call (n = N); each is split into steps at
``tts_step_delimiter`` on token boundaries, every step of every trajectory is scored in ONE
scorer call, and step scores are aggregated with ``tts_score_aggregation`` over the last
``tts_window_size`` steps. ``tts_selection="weighted"`` (the default) is weighted best-of-N:
scores are summed per equivalent answer (:func:`llm_tts.answers.vote` with ``weighted=True``)
and the best trajectory of the heaviest answer is returned; ``"best"`` returns the highest
aggregated score (first on a tie), which loses to the vote when the scorer is weak (issue 17).
"""

from __future__ import annotations

from llm_tts.config import MAX_PATHS
from llm_tts.strategies.base import StrategyContext, StrategyOutcome, best_score, register_strategy, select_finished


@register_strategy("offline_bon", size_field="tts_num_trajectories", size_cap=MAX_PATHS)
def offline_bon(ctx: StrategyContext) -> StrategyOutcome:
    trajectories = ctx.sample_full(ctx.config.tts_num_trajectories)
    ctx.score(trajectories)
    chosen, result = select_finished(trajectories, ctx.config.tts_selection)
    ctx.report(1, 0, len(trajectories), best_score(trajectories), f"scored {len(trajectories)} trajectories")
    return StrategyOutcome(trajectories, chosen, result)
