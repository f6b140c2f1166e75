"""Self-consistency: N independent paths, majority vote over mathematically equivalent answers.

All ``num_paths`` paths come from ONE backend call (n = num_paths). Answers are extracted and
grouped by :func:`llm_tts.answers.vote`. Ties between equally large groups go to the group with
the best-scoring member, then to the group seen first. The score is the configured scorer's
aggregated score when one is given (e.g. ``tts_scorer="entropy"``); with the default
``majority_vote`` it is the path's mean token log-probability (free: the backend returned it),
used only to break ties and pick the path returned within the winning group (it is not
reported as a score, since no scorer ran).

With ``tts_selector`` a fitted selector picks the answer instead of the vote (its P(right) is the
run's confidence), with ``tts_genselect`` the model itself (:mod:`llm_tts.strategies.genselect`);
the vote's distribution is reported as always. ``tts_route`` samples in increasing sizes while
unsure (:mod:`llm_tts.strategies.routing`).

With ``tts_stop_confidence`` the paths are sampled as a stream and sampling stops once the vote
is settled (:mod:`llm_tts.strategies.stopping`); paths aborted then are "pruned" and do not vote.
"""

from __future__ import annotations

from llm_tts.answers import vote
from llm_tts.config import MAX_PATHS, ROUTED_FIELDS, SCORED_FIELDS, SELECTING_FIELDS
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.ranking import mean_logprob, select_by
from llm_tts.strategies.registry import register_strategy
from llm_tts.strategies.routing import sample_routed
from llm_tts.strategies.stopping import sample_until_settled


@register_strategy(
    "self_consistency",
    size_field="num_paths",
    size_cap=MAX_PATHS,
    fields=(
        "tts_stop_confidence",
        *SCORED_FIELDS,
        *SELECTING_FIELDS,
        *ROUTED_FIELDS,
    ),  # a scorer breaks the vote's ties
    needs_scorer=False,
)
def self_consistency(ctx: StrategyContext) -> StrategyOutcome:
    threshold = ctx.config.tts_stop_confidence
    if ctx.config.tts_route is not None:
        paths = sample_routed(ctx, ctx.config.tts_route)
    elif threshold is None:
        paths = ctx.sample_full(ctx.config.num_paths)
    else:
        paths = sample_until_settled(ctx, ctx.config.num_paths, threshold, weighted=False)
    voters = [p for p in paths if not p.aborted]
    aborted = [p for p in paths if p.aborted]
    for p in aborted:
        p.status = "pruned"
    paths = voters or aborted  # aborted paths vote only when none finished
    ctx.score(paths)
    generated = ctx.genselect(paths)
    picked = None if ctx.selector is None else select_by(ctx.selector, paths)
    if generated is not None:
        chosen, result = generated
    elif picked is not None:
        chosen, result, ctx.confidence = picked
    else:
        tie_break = [p.score if ctx.scorer else mean_logprob(p) for p in paths]
        result = vote([p.answer for p in paths], tie_break)
        chosen = paths[result.selected]
        chosen.status = "selected"
    ctx.report(1, 0, len(paths), chosen.score, f"{len(result.distribution)} distinct answers")
    return StrategyOutcome(paths + (aborted if voters else []), chosen, result)
