"""Step-level beam search.

Each step expands every live beam by ``tts_candidates_per_step`` candidates (the first step
expands the prompt by ``tts_beam_size * tts_candidates_per_step``) in ONE backend call, drops
duplicate candidates, scores the new steps in ONE scorer call and ranks candidates by their
aggregated score (``tts_score_aggregation`` over ``tts_window_size`` steps). Candidates that
finished (an answer, end of sequence, ``max_tokens``) are set aside; the best unfinished ones
fill the beams left (``tts_beam_size`` minus finished), the rest are pruned. The search stops
when ``tts_beam_size`` candidates have finished, no beam is left, or after ``tts_max_steps``
(beams still open are then marked "length"). The answer is chosen among the finished
candidates (the open beams when none finished) by ``tts_selection``: the heaviest answer by
summed scores ("weighted", the default), or the best aggregated score ("best").
"""

from __future__ import annotations

from llm_tts.config import MAX_BEAM_SIZE, SCORED_FIELDS, SELECTING_FIELDS, STEP_FIELDS
from llm_tts.strategies.candidates import Beam, dedupe
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.ranking import best_score, score_key
from llm_tts.strategies.registry import register_strategy
from llm_tts.types import Trajectory


@register_strategy(
    "beam_search",
    size_field="tts_beam_size",
    size_cap=MAX_BEAM_SIZE,
    fields=("tts_candidates_per_step", *STEP_FIELDS, *SCORED_FIELDS, *SELECTING_FIELDS),
    requires=("continuation",),
)
def beam_search(ctx: StrategyContext) -> StrategyOutcome:
    c = ctx.config
    live = [Beam(Trajectory(ctx.prompt_ids))]
    finished: list[Beam] = []
    pruned: list[Beam] = []
    for step in range(1, c.tts_max_steps + 1):
        n = c.tts_candidates_per_step * (c.tts_beam_size if step == 1 else 1)
        candidates = dedupe(ctx.expand(live, n))
        ctx.score(candidates)
        candidates.sort(key=score_key, reverse=True)  # stable: first on a tie
        finished += [b for b in candidates if b.finished]
        open_ = [b for b in candidates if not b.finished]
        room = max(0, c.tts_beam_size - len(finished))
        live, dropped = open_[:room], open_[room:]
        pruned += dropped
        why = f"of {len(open_)} open candidates at step {step}, {room} beams left ({len(finished)} finished)"
        ctx.trace.note(dropped, "pruned", [f"ranked {room + i + 1} {why}" for i in range(len(dropped))])
        ctx.report(step, len(live), len(finished), best_score(finished + live))
        if not live:
            break
    for b in live:
        b.finished, b.finish_reason = True, "length"  # out of steps before an answer
    for b in pruned:
        b.status = "pruned"
    chosen, vote = ctx.select(finished or live)
    return StrategyOutcome([*finished, *live, *pruned], chosen, vote)
