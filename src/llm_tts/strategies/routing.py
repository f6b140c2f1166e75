"""Compute routed per question (``tts_route``): start small, add candidates only when unsure.

The run samples the route's first size; after each stage it reads the confidence in the answer
it would give now: ``tts_selector``'s calibrated confidence when a selector is set (the candidates
scored first, as the strategy scores them), else the leading answer's vote share (candidates
without an answer count in the share's denominator). At or above ``tts_route_threshold`` it stops
there ("confident"); below, it samples up to the next size, keeping every candidate so far, and
the strategy then chooses among all of them. A spent ``tts_token_budget`` ends it ("budget"),
with the best answer so far. :class:`~llm_tts.metadata.RouteInfo` on the context records each
stage's size, confidence and tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_tts.answers import vote
from llm_tts.config import DEFAULT_ROUTE_THRESHOLD
from llm_tts.metadata import RouteInfo, RouteStage
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.context import SearchStopped, StrategyContext
from llm_tts.strategies.ranking import beam_signals


def sample_routed(ctx: StrategyContext, route: Sequence[int]) -> list[Beam]:
    """Every candidate sampled along ``route`` (see the module doc)."""
    info = RouteInfo(
        signal="selector" if ctx.selector is not None else "vote_share",
        threshold=DEFAULT_ROUTE_THRESHOLD if ctx.config.tts_route_threshold is None else ctx.config.tts_route_threshold,
        sizes=list(route),
        stopped="largest",
    )
    ctx.route_info = info
    candidates: list[Beam] = []
    for size in route:
        try:
            candidates += ctx.sample_full(size - len(candidates))
        except SearchStopped:
            info.stopped = "budget"
            raise
        confidence = route_confidence(ctx, [c for c in candidates if not c.aborted] or candidates)
        info.stages.append(
            RouteStage(size=len(candidates), confidence=confidence, completion_tokens=ctx.completion_tokens)
        )
        if ctx.stopped_by == "budget":
            info.stopped = "budget"
            break
        if confidence is not None and confidence >= info.threshold:
            info.stopped = "confident"
            break
    return candidates


def route_confidence(ctx: StrategyContext, candidates: Sequence[Beam]) -> float | None:
    """The selector's calibrated confidence in its pick, else the leading answer's vote share
    (None: no candidate has an answer yet)."""
    if ctx.selector is not None:
        ctx.score(candidates)
        picked = ctx.selector.select([beam_signals(c) for c in candidates])
        return None if picked is None else picked.confidence
    if not any(c.answer is not None for c in candidates):
        return None
    return vote([c.answer for c in candidates], [None] * len(candidates)).consensus
