"""Token and group confidence from top-k logprobs, as DeepConf defines them (Fu et al., 2025).

A token's confidence is the negative mean log-probability of the k most likely tokens at its
position, ``C_i = -(1/k) sum_j log P_i(j)``: high when the model's distribution is peaked, low
when it hesitates. A trace's group confidences are the means of ``C_i`` over every sliding
window of ``window`` tokens (one group of all tokens when the trace is shorter), and its
*lowest group confidence* is the weakest stretch of its reasoning. All computed from the
logprobs the backend already returned: no extra forward pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence


def token_confidence(top: Mapping[int, float]) -> float:
    """``-mean(top-k logprobs)`` at one position (0 when the backend returned none there)."""
    return -sum(top.values()) / len(top) if top else 0.0


def token_confidences(tops: Iterable[Mapping[int, float]]) -> list[float]:
    return [token_confidence(t) for t in tops]


def group_confidences(confs: Sequence[float], window: int) -> list[float]:
    """The mean confidence of every sliding window (one group of all tokens when shorter)."""
    if not confs:
        return []
    if len(confs) <= window:
        return [sum(confs) / len(confs)]
    total = sum(confs[:window])
    out = [total / window]
    for i in range(window, len(confs)):
        total += confs[i] - confs[i - window]
        out.append(total / window)
    return out


def lowest_group_confidence(confs: Sequence[float], window: int) -> float | None:
    groups = group_confidences(confs, window)
    return min(groups) if groups else None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class SlidingConfidence:
    """The running group confidence of one trace as its tokens arrive (the online check)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._confs: deque[float] = deque(maxlen=window)
        self._total = 0.0

    def add(self, conf: float) -> float | None:
        """Add a token's confidence; the current window's mean once ``window`` tokens are in."""
        if len(self._confs) == self.window:
            self._total -= self._confs[0]
        self._confs.append(conf)
        self._total += conf
        return self._total / self.window if len(self._confs) == self.window else None
