"""Confidence scorers computed from the logprobs the backend already returned (no forward pass).

Every score is a probability-like number in [0, 1], higher = better, so all aggregation
modes (including ``product``) apply. ``logprobs`` are the raw (temperature-free) per-token
log-probabilities of the sampled tokens; ``top_logprobs`` the k most likely tokens per position.

- ``perplexity``: ``exp(mean_t log p(x_t))`` = 1 / perplexity of the step = the geometric mean
  of its token probabilities. 1 when the model was certain of every token it wrote.
- ``sequence_prob``: ``exp(sum_t log p(x_t))`` = the probability of the whole step given its
  prefix. Shrinks with length (a long step is less probable than a short one), and underflows
  to 0.0 below about e^-745; use ``perplexity`` to compare steps of different lengths.
- ``entropy``: ``exp(-mean_t H_t)`` where ``H_t`` is the entropy (nats) of position t's
  distribution estimated from the top-k: the k known probabilities (plus the sampled token's
  if it is outside the top-k) and all leftover mass lumped into one outcome. That estimate is
  a lower bound of the true entropy with at most ``log(k + 2)`` nats, so the score lies in
  ``[1 / (k + 2), 1]``: 1 when the model was certain, low when it hesitated.
- ``self_certainty``: ``1 - exp(-mean_t KL_t)``, the self-certainty of Kang et al. (2025), the
  mean over tokens of ``KL(U || p_t)``, the distance of position t's distribution from uniform.
  The paper's U is uniform over the whole vocabulary; the backend returns only the top-k, so
  here U is uniform over the k returned tokens: ``KL_t = -log k - (1/k) sum_{j in top-k} log p_t(j)``.
  That is the exact KL from that U to the full distribution (it needs p only on U's support),
  always >= 0, 0 when the top-k are equally likely, and it ranks traces like the paper's does
  when the tail beyond the top-k is flat. ``1 - exp(-x)`` maps it into [0, 1) keeping the order.
- ``tail_entropy``: ``exp(-max_w mean_{t in w} H_t)``: the entropy estimate above over the
  most uncertain window of ``TAIL_WINDOW`` consecutive tokens (the whole step when shorter), so a
  step is judged by its weakest stretch, not its average.

A step without logprobs (the backend did not return them, or the text was injected rather than
sampled) raises :class:`~llm_tts.errors.CapabilityError`: never a silent 0.
"""

from __future__ import annotations

import heapq
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from llm_tts.errors import CapabilityError, InvalidParameterError
from llm_tts.scorers.base import Scorer, ScorerContext, ScoreRequest, register_scorer
from llm_tts.types import Step

ENTROPY_TOP_K = 10  # top-k asked of the backend for the entropy estimate (lowered to its limit)
TAIL_WINDOW = 16  # tokens per window of tail_entropy (DeepConf's groups, at the scale of one step)


class LogprobScorer(Scorer):
    """Scores each step from its own token logprobs; subclasses give the per-step formula."""

    needs_logprobs: ClassVar[bool] = True

    def __init__(self, ctx: ScorerContext) -> None:
        caps = ctx.backend.capabilities
        if not caps.logprobs:
            raise CapabilityError(
                f"scorer {self.name!r} needs token logprobs, which backend {ctx.backend.name!r} cannot return; "
                "use a backend with logprobs or tts_scorer='llm_judge'/'prm'"
            )

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return [[self.score_step(step) for step in r.new_steps] for r in requests]

    @abstractmethod
    def score_step(self, step: Step) -> float: ...

    def _logprobs(self, step: Step) -> tuple[float, ...]:
        lps = step.logprobs
        if lps is None:
            why = "it was injected, not sampled" if not step.segment.is_model else "the backend returned none"
            raise CapabilityError(f"scorer {self.name!r} got a step without logprobs ({why}): {step.text[:40]!r}")
        if not lps:
            raise InvalidParameterError("step", step.text, f"scorer {self.name!r} needs a step with at least one token")
        if any(math.isnan(x) for x in lps):
            raise InvalidParameterError("logprobs", lps, "must not contain NaN")
        return lps


@register_scorer("perplexity")
class PerplexityScorer(LogprobScorer):
    """exp(mean token logprob) = 1 / perplexity, in (0, 1]."""

    name = "perplexity"

    def score_step(self, step: Step) -> float:
        lps = self._logprobs(step)
        return math.exp(math.fsum(lps) / len(lps))


@register_scorer("sequence_prob")
class SequenceProbScorer(LogprobScorer):
    """exp(sum of token logprobs) = P(step | prefix), in [0, 1]."""

    name = "sequence_prob"

    def score_step(self, step: Step) -> float:
        return math.exp(math.fsum(self._logprobs(step)))


class TopLogprobScorer(LogprobScorer):
    """A scorer that also reads each position's top-k logprobs (asks for ``ENTROPY_TOP_K``)."""

    top_logprobs_needed: ClassVar[int] = ENTROPY_TOP_K

    def __init__(self, ctx: ScorerContext) -> None:
        super().__init__(ctx)
        limit = ctx.backend.capabilities.max_top_logprobs
        if limit < 1:
            raise CapabilityError(
                f"scorer {self.name!r} needs top-k logprobs, but backend {ctx.backend.name!r} returns at most {limit}"
            )
        # Per instance: a backend with a lower top-k limit still works, with a coarser estimate.
        self.top_logprobs_needed = min(ENTROPY_TOP_K, limit)  # type: ignore[misc]

    def _tops(self, step: Step) -> tuple[Mapping[int, float], ...]:
        """The top-k of every position, cut to this scorer's k (a caller may have asked for more)."""
        tops = step.top_logprobs
        if tops is None or any(not t for t in tops):
            raise CapabilityError(
                f"scorer {self.name!r} got a step without top-k logprobs: {step.text[:40]!r}; "
                f"generate with top_logprobs >= 1 (this scorer asks for {self.top_logprobs_needed})"
            )
        k = self.top_logprobs_needed
        if any(len(t) > k for t in tops):
            tops = tuple(dict(heapq.nlargest(k, t.items(), key=lambda kv: kv[1])) for t in tops)
        return tops

    def _entropies(self, step: Step) -> list[float]:
        lps = self._logprobs(step)
        return list(map(_entropy_lower_bound, self._tops(step), lps, step.token_ids))


@register_scorer("entropy")
class EntropyScorer(TopLogprobScorer):
    """exp(-mean top-k entropy estimate), in [1/(k+2), 1]."""

    name = "entropy"

    def score_step(self, step: Step) -> float:
        entropies = self._entropies(step)
        return math.exp(-math.fsum(entropies) / len(entropies))


@register_scorer("tail_entropy")
class TailEntropyScorer(TopLogprobScorer):
    """exp(-mean entropy of the most uncertain TAIL_WINDOW-token window), in [1/(k+2), 1]."""

    name = "tail_entropy"

    def score_step(self, step: Step) -> float:
        entropies = self._entropies(step)
        width = min(TAIL_WINDOW, len(entropies))
        worst = total = math.fsum(entropies[:width])
        for i in range(width, len(entropies)):
            total += entropies[i] - entropies[i - width]
            worst = max(worst, total)
        return math.exp(-worst / width)


@register_scorer("self_certainty")
class SelfCertaintyScorer(TopLogprobScorer):
    """1 - exp(-mean KL(uniform over the top-k || p)), in [0, 1); see the module doc."""

    name = "self_certainty"

    def score_step(self, step: Step) -> float:
        self._logprobs(step)  # the same refusals as every logprob scorer (injected text, no tokens)
        kls = [_kl_from_uniform(top) for top in self._tops(step)]
        return 1.0 - math.exp(-math.fsum(kls) / len(kls))


def _kl_from_uniform(top: Mapping[int, float]) -> float:
    """KL(U_k || p) for U_k uniform over the k tokens of ``top`` (their logprobs under p)."""
    k = len(top)
    return max(0.0, -math.log(k) - math.fsum(top.values()) / k)  # clamp: round-off below 0


def _entropy_lower_bound(top: Mapping[int, float], chosen_logprob: float, chosen_id: int) -> float:
    """Entropy (nats) of the known probabilities plus one lumped outcome for the leftover mass."""
    known = dict(top)
    known.setdefault(chosen_id, chosen_logprob)  # sampled outside the top-k: its probability is known too
    probs = [math.exp(lp) for lp in known.values()]
    rest = max(0.0, 1.0 - math.fsum(probs))  # clamp: float round-off can overshoot 1
    return -math.fsum(p * math.log(p) for p in (*probs, rest) if p > 0.0)
