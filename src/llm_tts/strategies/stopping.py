"""When a stream of sampled answers is settled: the rule behind ``tts_stop_confidence``.

Model. Answers are votes for equivalent-answer groups with unknown probabilities under a
uniform Dirichlet prior. After ``a`` votes for the leading answer and ``b`` for the runner-up,
the leader's share of the two-way contest, ``theta = p_leader / (p_leader + p_runner_up)``, is
``Beta(a + 1, b + 1)`` (the Dirichlet's aggregation property), so the posterior probability that
the leader really is the more likely answer, and so stays the majority as more paths come, is
``P(theta > 1/2) = 1 - I_{1/2}(a + 1, b + 1)`` (for whole counts: the chance that a fair coin
shows at most ``a`` heads in ``a + b + 1`` tosses). Sampling stops ("confidence") when it
reaches the threshold; e.g. 0.95 needs 4 agreeing paths and no dissent, or 7 to 1. It also
stops ("consensus") when the paths left could not overturn the leader (``a - b > left``).

Paths are sampled as a stream, in waves of :func:`wave_size` paths in one backend call each;
the rule is checked as each path finishes and the wave's paths still running are aborted in the
engine when it fires. Weighted best-of-N checks it after each wave, on effective counts
(``answered paths x group weight / total weight``), since its weights need the scorer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llm_tts.answers import group_answers, vote
from llm_tts.backends.base import SampleUpdate, WatchVerdict
from llm_tts.metadata import StoppedBy
from llm_tts.strategies.base import Beam, StrategyContext

_CF_ITERATIONS = 300
_CF_EPS = 1e-15
_TINY = 1e-300


def leader_stays_probability(leader: float, runner_up: float) -> float:
    """``P(theta > 1/2)`` for ``theta ~ Beta(leader + 1, runner_up + 1)`` (see the module doc)."""
    return 1.0 - regularized_beta(0.5, leader + 1.0, runner_up + 1.0)


def settled(counts: Sequence[float], left: int, threshold: float) -> StoppedBy | None:
    """Why sampling can stop given the votes per answer so far and the paths ``left``, or None."""
    if not counts or left <= 0:
        return None  # nothing voted yet, or nothing left to save
    top = sorted(counts, reverse=True)
    a, b = top[0], top[1] if len(top) > 1 else 0.0
    if a - b > left:
        return "consensus"
    if leader_stays_probability(a, b) >= threshold:
        return "confidence"
    return None


def wave_size(total: int, threshold: float) -> int:
    """Paths per backend call: the fewest agreeing paths that can reach ``threshold`` (a
    unanimous ``k`` gives ``1 - 2^-(k+1)``), and at least a quarter of ``total``."""
    unanimous = max(1, math.ceil(math.log2(1.0 / (1.0 - threshold)) - 1e-12) - 1)
    return min(total, max(unanimous, math.ceil(total / 4)))


def vote_counts(answers: Sequence[str | None]) -> list[float]:
    """Votes per equivalent answer (no-answer paths do not vote)."""
    return [float(len(g.members)) for g in group_answers(answers)]


def weighted_counts(answers: Sequence[str | None], scores: Sequence[float | None]) -> list[float]:
    """Effective votes per answer for a weighted vote: answered paths shared out by group weight."""
    answered = sum(a is not None for a in answers)
    if not answered:
        return []
    weights = vote(answers, scores, weighted=True).group_weights
    total = sum(weights.values())
    if not total > 0:
        return vote_counts(answers)
    return [answered * w / total for w in weights.values()]


def sample_until_settled(ctx: StrategyContext, total: int, threshold: float, *, weighted: bool) -> list[Beam]:
    """Up to ``total`` whole paths, sampled in waves until the vote is settled; returns them all
    (aborted ones included, marked by ``Beam.aborted``). ``weighted``: score each wave and check
    the weighted vote after it; else check the vote as each path finishes."""
    paths: list[Beam] = []
    decision: StoppedBy | None = None
    wave = wave_size(total, threshold)
    while len(paths) < total and decision is None:
        stream = (
            None
            if weighted
            else _StreamedVote(ctx, [p.answer for p in paths if not p.aborted], total, len(paths), threshold)
        )
        batch = ctx.sample_full(min(wave, total - len(paths)), watcher=stream)
        paths += batch
        if stream is not None:
            decision = stream.decision
        else:
            ctx.score([p for p in batch if not p.aborted])
            kept = [p for p in paths if not p.aborted]
            counts = weighted_counts([p.answer for p in kept], [p.score for p in kept])
            decision = settled(counts, total - len(paths), threshold)
        ctx.report(1, 0, len(paths), None, f"{len(paths)} of {total} paths sampled")
    if decision is not None:
        voters = sum(not p.aborted for p in paths)
        ctx.stop(decision, f"vote settled after {voters} paths ({decision}): the rest are not sampled")
    return paths


class _StreamedVote:
    """A wave's watcher: adds each finished path's answer to the vote and aborts the wave once settled."""

    def __init__(
        self, ctx: StrategyContext, answers: list[str | None], total: int, done: int, threshold: float
    ) -> None:
        self.ctx = ctx
        self.answers = answers
        self.total = total
        self.done = done  # paths finished (or aborted) before this one
        self.threshold = threshold
        self.decision: StoppedBy | None = None

    def __call__(self, update: SampleUpdate) -> WatchVerdict:
        if update.segment is None or self.decision is not None:
            return "continue"
        self.done += 1
        self.answers.append(self.ctx.full_beam(update.segment).answer)
        self.decision = settled(vote_counts(self.answers), self.total - self.done, self.threshold)
        return "continue" if self.decision is None else "abort_all"


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` (continued fraction, Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_ITERATIONS + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _CF_EPS:
            break
    return h
