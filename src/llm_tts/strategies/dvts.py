"""Diverse verifier tree search (DVTS): independent subtrees, each a greedy step search.

The budget is split into ``tts_num_subtrees`` subtrees (``tts_budget`` sets it to budget /
``tts_candidates_per_step``). Every step, each open subtree's leaf is expanded by
``tts_candidates_per_step`` candidates (the first step samples them all from the prompt, then
splits them into subtrees); all subtrees' candidates go to the backend in ONE call
and to the scorer in ONE call. Each subtree keeps its candidate whose new step scored best (the
siblings share the prefix, so the new step is what differs; the first wins a tie) and prunes the
rest. A subtree ends when its leaf states an answer, ends the sequence or hits ``max_tokens``;
after ``tts_max_steps`` open leaves are marked "length". Subtrees never compete with each other,
which keeps the search diverse where beam search collapses onto one prefix. The answer is the
heaviest answer among the leaves by summed scores (``tts_selection="weighted"``, the default),
or the leaf with the best aggregated score (``"best"``).
"""

from __future__ import annotations

from llm_tts.config import MAX_SUBTREES, SCORED_FIELDS, SELECTING_FIELDS, STEP_FIELDS
from llm_tts.strategies.candidates import Beam, dedupe
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.ranking import best_score
from llm_tts.strategies.registry import register_strategy
from llm_tts.types import Trajectory


@register_strategy(
    "dvts",
    size_field="tts_num_subtrees",
    size_cap=MAX_SUBTREES,
    budget_unit="tts_candidates_per_step",
    fields=(*STEP_FIELDS, *SCORED_FIELDS, *SELECTING_FIELDS),
    requires=("continuation",),
)
def dvts(ctx: StrategyContext) -> StrategyOutcome:
    c, k = ctx.config, ctx.config.tts_candidates_per_step
    root = Beam(Trajectory(ctx.prompt_ids))
    leaves = [root] * c.tts_num_subtrees  # every subtree starts at the prompt
    pruned: list[Beam] = []
    for step in range(1, c.tts_max_steps + 1):
        open_ = [i for i, leaf in enumerate(leaves) if not leaf.finished]
        if not open_:
            break
        if step == 1:  # all subtrees' first steps as n samples of the one prompt
            candidates = ctx.expand([root], k * len(open_))
        else:
            candidates = ctx.expand([leaves[i] for i in open_], k)
        ctx.score(candidates)
        for j, i in enumerate(open_):
            siblings = dedupe(candidates[j * k : (j + 1) * k])
            leaves[i] = max(siblings, key=lambda b: b.step_scores[-1] if b.step_scores else 0.0)
            lost = [b for b in siblings if b is not leaves[i]]
            ctx.trace.note(lost, "pruned", f"subtree {i + 1}: a sibling's step scored higher")
            pruned += lost
        done = sum(leaf.finished for leaf in leaves)
        ctx.report(step, len(leaves) - done, done, best_score(leaves))
    for leaf in leaves:
        if not leaf.finished:
            leaf.finished, leaf.finish_reason = True, "length"  # out of steps before an answer
    for b in pruned:
        b.status = "pruned"
    chosen, vote = ctx.select(leaves)
    return StrategyOutcome([*leaves, *pruned], chosen, vote)
