"""When a stream of sampled answers is settled: the rule behind ``tts_stop_confidence``.

Model. Answers are votes for equivalent-answer groups with unknown probabilities under a
uniform Dirichlet prior. After ``a`` votes for the leading answer and ``b`` for the runner-up,
the leader's share of their two-way contest, ``theta = p_leader / (p_leader + p_runner_up)``,
has the posterior ``Beta(a + 1, b + 1)`` (the Dirichlet's aggregation property). The question
that matters is whether the leader is still ahead when all ``N`` paths would have voted: of the
``m`` paths left, the leader's share ``X`` of those going to either of the two is then
``BetaBinomial(m, a + 1, b + 1)``, and the posterior probability that the leader stays the
majority is ``P(a + X > b + m - X)`` (a tie counts as not staying). Sampling stops
("confidence") when it reaches the threshold, and ("consensus") when it is certain because the
paths left cannot overturn the leader (``a - b > m``). With 16 paths and 0.95: 4 agreeing paths
and no dissent, or 5 to 1. Counting every path left as a vote for one of the two is cautious:
paths that go to a third answer only widen the leader's margin over the runner-up.

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
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.context import StrategyContext


def leader_stays_probability(leader: float, runner_up: float, left: int) -> float:
    """``P(leader + X > runner_up + left - X)`` for ``X ~ BetaBinomial(left, leader + 1, runner_up + 1)``:
    the posterior probability that the leader is still ahead after ``left`` more votes."""
    alpha, beta = leader + 1.0, runner_up + 1.0
    log_norm = _log_beta(alpha, beta)
    total = 0.0
    for x in range(left + 1):
        if leader + x > runner_up + left - x:
            log_choose = math.lgamma(left + 1) - math.lgamma(x + 1) - math.lgamma(left - x + 1)
            total += math.exp(log_choose + _log_beta(x + alpha, left - x + beta) - log_norm)
    return min(1.0, total)


def settled(counts: Sequence[float], left: int, threshold: float) -> StoppedBy | None:
    """Why sampling can stop given the votes per answer so far and the paths ``left``, or None."""
    if not counts or left <= 0:
        return None  # nothing voted yet, or nothing left to save
    top = sorted(counts, reverse=True)
    a, b = top[0], top[1] if len(top) > 1 else 0.0
    if a - b > left:
        return "consensus"
    if leader_stays_probability(a, b, left) >= threshold:
        return "confidence"
    return None


def wave_size(total: int, threshold: float) -> int:
    """Paths per backend call: the fewest agreeing paths that can settle the vote at ``threshold``
    with the rest of ``total`` left, and at least a quarter of ``total``."""
    unanimous = next(
        (k for k in range(1, total) if leader_stays_probability(k, 0, total - k) >= threshold or k > total - k), total
    )
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
    # Under budget forcing a path answers only after its thinking call: the vote is checked per wave.
    per_wave = weighted or ctx.forcing is not None
    while len(paths) < total and decision is None:
        stream = (
            None
            if per_wave
            else _StreamedVote(ctx, [p.answer for p in paths if not p.aborted], total, len(paths), threshold)
        )
        batch = ctx.sample_full(min(wave, total - len(paths)), watcher=stream)
        paths += batch
        if stream is not None:
            decision = stream.decision
        else:
            ctx.score([p for p in batch if not p.aborted])
            kept = [p for p in paths if not p.aborted]
            answers = [p.answer for p in kept]
            counts = weighted_counts(answers, [p.score for p in kept]) if weighted else vote_counts(answers)
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


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
