"""Particle filtering: step-level sequential Monte Carlo over partial trajectories.

``tts_num_particles`` particles start from the prompt (ONE backend call). Every step, the new
steps are scored in ONE scorer call; particles that finished (an answer, end of sequence,
``max_tokens``) are set aside, and the open ones are resampled: as many draws as open particles,
with replacement, each particle drawn with probability ``softmax(x / tts_resampling_temperature)``
where ``x`` is its latest step reward (its logit when every reward is a probability in [0, 1],
as a PRM's or judge's are; the score itself for log-space scores). A particle drawn twice
continues as two particles; one never drawn is pruned. The draws extend by one step each in ONE
backend call. Unlike beam search's hard top-k, a weak partial answer keeps a chance to survive,
which keeps the search from collapsing early. Resampling uses ``random.Random(seed)``, so a run
is reproducible wherever the backend is. After ``tts_max_steps`` open particles are marked
"length". The answer is chosen among the finished particles by ``tts_selection``: the heaviest
answer by summed scores ("weighted", the default), or the best aggregated score ("best").
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from llm_tts.config import MAX_PARTICLES, SCORED_FIELDS, SELECTING_FIELDS, STEP_FIELDS
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.ranking import best_score
from llm_tts.strategies.registry import register_strategy
from llm_tts.types import Trajectory

_EPS = 1e-6  # keeps the logit of a reward of exactly 0 or 1 finite


@register_strategy(
    "particle_filtering",
    size_field="tts_num_particles",
    size_cap=MAX_PARTICLES,
    fields=("tts_resampling_temperature", *STEP_FIELDS, *SCORED_FIELDS, *SELECTING_FIELDS),
    requires=("continuation",),
)
def particle_filtering(ctx: StrategyContext) -> StrategyOutcome:
    c = ctx.config
    rng = random.Random(c.seed)
    particles = ctx.expand([Beam(Trajectory(ctx.prompt_ids))], c.tts_num_particles)
    finished: list[Beam] = []
    pruned: list[Beam] = []
    for step in range(1, c.tts_max_steps + 1):
        ctx.score(particles)
        finished += [p for p in particles if p.finished]
        live = [p for p in particles if not p.finished]
        ctx.report(step, len(live), len(finished), best_score(finished + live))
        if not live or step == c.tts_max_steps:
            break
        weights = resampling_weights(
            [p.step_scores[-1] if p.step_scores else 0.0 for p in live], c.tts_resampling_temperature
        )
        draws = Counter(rng.choices(range(len(live)), weights, k=len(live)))
        for i, p in enumerate(live):
            p.resampled += draws[i]
        lost = [p for i, p in enumerate(live) if not draws[i]]
        ctx.trace.note(lost, "resampled", f"not drawn at resampling after step {step}")
        pruned += lost
        particles = ctx.expand([live[i] for i in sorted(draws.elements())], 1)
    for p in live:
        p.finished, p.finish_reason = True, "length"  # out of steps before an answer
    for p in pruned:
        p.status = "pruned"
    final = finished + live
    chosen, vote = ctx.select(final)
    return StrategyOutcome([*final, *pruned], chosen, vote)


def resampling_weights(rewards: Sequence[float], temperature: float) -> list[float]:
    """Softmax of the rewards over ``temperature``; probabilities are taken as logits first."""
    if all(0.0 <= r <= 1.0 for r in rewards):
        clipped = [min(max(r, _EPS), 1 - _EPS) for r in rewards]
        rewards = [math.log(p / (1 - p)) for p in clipped]
    top = max(rewards)
    return [math.exp((r - top) / temperature) for r in rewards]
