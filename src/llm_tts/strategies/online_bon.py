"""Online best-of-N: grow one trajectory step by step, keeping the best of N next steps.

Each step samples ``tts_candidates_per_step`` continuations of the current trajectory in ONE
backend call (each stops at ``tts_step_delimiter`` or ``tts_step_max_tokens``), scores the new
steps in ONE scorer call and keeps the candidate whose new step scored best (they share the
prefix, so the new step is what differs; the first one wins a tie). It stops when the kept
step states an answer, ends the sequence, or hits ``max_tokens``, or after ``tts_max_steps``
steps (then the trajectory is marked "length"). The returned score is the aggregated one.
"""

from __future__ import annotations

from llm_tts.config import MAX_CANDIDATES_PER_STEP, SCORED_FIELDS, STEP_FIELDS
from llm_tts.strategies.candidates import Beam, dedupe
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.registry import register_strategy
from llm_tts.types import Trajectory


@register_strategy(
    "online_bon",
    size_field="tts_candidates_per_step",
    size_cap=MAX_CANDIDATES_PER_STEP,
    fields=(*STEP_FIELDS, *SCORED_FIELDS),
    requires=("continuation",),
)
def online_bon(ctx: StrategyContext) -> StrategyOutcome:
    c = ctx.config
    beam = Beam(Trajectory(ctx.prompt_ids))
    pruned: list[Beam] = []
    for step in range(1, c.tts_max_steps + 1):
        candidates = dedupe(ctx.expand([beam], c.tts_candidates_per_step))
        ctx.score(candidates)
        beam = max(candidates, key=lambda b: b.step_scores[-1])  # max() keeps the first on a tie
        lost = [b for b in candidates if b is not beam]
        ctx.trace.note(lost, "pruned", "a sibling's step scored higher")
        pruned += lost
        ctx.report(step, 0 if beam.finished else 1, int(beam.finished), beam.score)
        if beam.finished:
            break
    else:
        beam.finished, beam.finish_reason = True, "length"  # out of steps before an answer
    for b in pruned:
        b.status = "pruned"
    beam.status = "selected"
    return StrategyOutcome([beam, *pruned], beam)
