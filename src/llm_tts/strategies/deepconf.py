"""DeepConf: confidence-filtered, confidence-weighted voting (Fu et al., "Deep Think with
Confidence", 2025), in both of the paper's modes. Trace confidence comes from the top-k
logprobs the backend returns (:mod:`llm_tts.strategies.confidence`).

- **offline** (``tts_deepconf_mode="offline"``): ``num_paths`` whole traces in ONE backend call;
  each trace's lowest group confidence (windows of ``tts_confidence_window`` tokens) is its
  score; traces below the ``tts_deepconf_percentile``-th percentile of those scores are pruned
  and the rest vote, each weighted by its confidence.
- **online** (the default): ``tts_deepconf_warmup`` warm-up traces set the bar at that same
  percentile of their lowest group confidences; the other traces are sampled in waves of the
  warm-up size, each watched token by token and aborted in the engine as soon as its current
  group confidence falls below the bar (its tokens so far are counted). Traces at or above the bar
  vote as offline. Sampling stops early once the confidence-weighted vote is settled, by the rule
  of ``tts_stop_confidence`` (:mod:`llm_tts.strategies.stopping`, on effective counts; threshold
  ``tts_stop_confidence``, else :data:`CONSENSUS`). The paper stops at a 95% vote share, which on
  4 warm-up traces would stop on 3 agreeing votes; the posterior rule asks more of few votes.

The paper's settings (16 warm-up traces of 512, 2048-token windows, for 10k-token traces) are
scaled to small models here: 4 warm-up traces, 16-token windows. ``tts_deepconf_percentile=10``
(the default) keeps about 90% of traces, the paper's conservative DeepConf-high; 90 is its
aggressive DeepConf-low. The scorer, if any, is not used: confidence is the weight.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_tts.answers import vote
from llm_tts.backends.base import SampleUpdate, WatchVerdict
from llm_tts.config import MAX_PATHS
from llm_tts.metadata import StoppedBy
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.confidence import (
    SlidingConfidence,
    lowest_group_confidence,
    percentile,
    token_confidence,
    token_confidences,
)
from llm_tts.strategies.context import StrategyContext, StrategyOutcome
from llm_tts.strategies.registry import register_strategy
from llm_tts.strategies.stopping import settled, weighted_counts

TOP_K = 20  # top logprobs per token, as in the paper (at most what the backend returns)
CONSENSUS = 0.95  # the paper's tau, here the threshold of the settled-vote rule


@register_strategy(
    "deepconf",
    size_field="num_paths",
    size_cap=MAX_PATHS,
    fields=(
        "tts_stop_confidence",
        "tts_deepconf_mode",
        "tts_deepconf_warmup",
        "tts_deepconf_percentile",
        "tts_confidence_window",
    ),
    needs_scorer=False,
    requires=("top_logprobs",),  # checked when the request is planned
    code_execution=False,  # it watches each trace as one sampled segment
)
def deepconf(ctx: StrategyContext) -> StrategyOutcome:
    k = min(TOP_K, ctx.backend.capabilities.max_top_logprobs)
    if ctx.config.tts_deepconf_mode == "offline":
        return _offline(ctx, k)
    return _online(ctx, k)


def _offline(ctx: StrategyContext, k: int) -> StrategyOutcome:
    c = ctx.config
    traces = ctx.sample_full(c.num_paths, top_logprobs=k)
    _score(traces, c.tts_confidence_window)
    bar = percentile([_conf(t) for t in traces], c.tts_deepconf_percentile)
    voters = [t for t in traces if _conf(t) >= bar]
    ctx.report(1, 0, len(traces), None, f"confidence bar {bar:.3f}: {len(voters)} of {len(traces)} traces vote")
    dropped = [t for t in traces if _conf(t) < bar]
    ctx.trace.note(dropped, "pruned", f"confidence below the bar {bar:.3f}")
    return _vote(voters, dropped)


def _online(ctx: StrategyContext, k: int) -> StrategyOutcome:
    c = ctx.config
    total, warmup = c.num_paths, min(c.tts_deepconf_warmup, c.num_paths)
    window = c.tts_confidence_window
    warm = ctx.sample_full(warmup, top_logprobs=k)
    _score(warm, window)
    bar = percentile([_conf(t) for t in warm], c.tts_deepconf_percentile)
    voters = [t for t in warm if _conf(t) >= bar]
    dropped = [t for t in warm if _conf(t) < bar]
    ctx.trace.note(dropped, "pruned", f"warm-up confidence below the bar {bar:.3f}")
    sampled = warmup
    ctx.report(1, 0, sampled, None, f"warm-up: confidence bar {bar:.3f}")
    step = 1
    threshold = c.tts_stop_confidence or CONSENSUS
    decision = _settled(voters, total - sampled, threshold)
    while sampled < total and decision is None:
        step += 1
        batch = ctx.sample_full(min(warmup, total - sampled), watcher=_ConfidenceBar(bar, window), top_logprobs=k)
        sampled += len(batch)
        _score(batch, window)
        voters += [t for t in batch if not t.aborted and _conf(t) >= bar]
        below = [t for t in batch if t.aborted or _conf(t) < bar]
        ctx.trace.note(below, "pruned", f"stopped below the confidence bar {bar:.3f}")
        dropped += below
        stopped = sum(t.aborted for t in batch)
        ctx.report(step, 0, sampled, None, f"{stopped} of {len(batch)} traces stopped below the confidence bar")
        decision = _settled(voters, total - sampled, threshold)
    if decision is not None:
        ctx.stop(decision, f"weighted vote settled after {sampled} of {total} traces")
    return _vote(voters, dropped)


class _ConfidenceBar:
    """Aborts a trace as soon as its current group confidence falls below the bar."""

    def __init__(self, bar: float, window: int) -> None:
        self.bar = bar
        self.window = window
        self._traces: dict[tuple[int, int], SlidingConfidence] = {}

    def __call__(self, update: SampleUpdate) -> WatchVerdict:
        if update.segment is not None or not update.top_logprobs:
            return "continue"
        group = self._traces.setdefault((update.prompt_index, update.sample_index), SlidingConfidence(self.window))
        tops = update.top_logprobs
        for top in tops[len(tops) - update.new_tokens :]:
            current = group.add(token_confidence(top))
            if current is not None and current < self.bar:
                return "abort"
        return "continue"


def _score(traces: Sequence[Beam], window: int) -> None:
    """Each trace's score is its lowest group confidence (None without top logprobs)."""
    for t in traces:
        tops = t.trajectory.segments[0].top_logprobs if t.trajectory.segments else None
        t.score = lowest_group_confidence(token_confidences(tops or ()), window)


def _conf(t: Beam) -> float:
    return t.score if t.score is not None else float("-inf")


def _settled(voters: Sequence[Beam], left: int, threshold: float) -> StoppedBy | None:
    return settled(weighted_counts([t.answer for t in voters], [t.score for t in voters]), left, threshold)


def _vote(voters: list[Beam], dropped: list[Beam]) -> StrategyOutcome:
    """Confidence-weighted vote among ``voters`` (all traces when none is left to vote)."""
    pool = voters or dropped
    for t in dropped:
        t.status = "pruned"
    result = vote([t.answer for t in pool], [t.score for t in pool], weighted=True)
    chosen = pool[result.selected]
    chosen.status = "selected"
    return StrategyOutcome(pool + (dropped if voters else []), chosen, result)
