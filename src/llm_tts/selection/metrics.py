"""How well a signal tells right answers from wrong ones (AUROC) and how calibrated a
probability is (ECE), in plain Python: used by ``llm-tts eval``'s summary and the selector report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

CALIBRATION_BINS = 10


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """P(a random right one scores above a random wrong one), ties counting half (Mann-Whitney).
    None when there are no right or no wrong ones: nothing to tell apart."""
    if len(scores) != len(labels):
        raise ValueError("auroc needs one label per score")
    pos = sum(1 for ok in labels if ok)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        rank_sum += sum(mid for k in range(i, j + 1) if labels[order[k]])
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def calibration_bins(
    pairs: Iterable[tuple[float, bool]], bins: int = CALIBRATION_BINS
) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) of each non-empty equal-width bin, low to high."""
    grouped: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for conf, correct in pairs:
        grouped[min(max(int(conf * bins), 0), bins - 1)].append((conf, correct))
    out = []
    for b in sorted(grouped):
        members = grouped[b]
        out.append(
            (sum(c for c, _ in members) / len(members), sum(ok for _, ok in members) / len(members), len(members))
        )
    return out


def expected_calibration_error(pairs: Iterable[tuple[float, bool]], bins: int = CALIBRATION_BINS) -> float | None:
    """Each bin's |accuracy - mean confidence| weighed by its share of pairs (None: no pairs)."""
    table = calibration_bins(pairs, bins)
    total = sum(n for _, _, n in table)
    if not total:
        return None
    return sum(n / total * abs(acc - conf) for conf, acc, n in table)
