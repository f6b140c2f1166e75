"""Per-configuration numbers: accuracy with a seeded bootstrap interval, generated tokens, estimated
FLOPs, time and calibration, written as ``summary.csv`` and ``summary.json``.

``mean_flops`` is the mean of the runs' ``tts_metadata.cost.flops`` (2 x parameters x tokens
computed, the scorer's included; see :mod:`llm_tts.backends.cost`); None when a run does not know
it (a remote model's parameters are unknown).

The interval resamples questions (not rows), so several seeds of one question move together.
Confidence is the selector's ``confidence`` where a fitted selector chose (``tts_selector``), else
the run's ``consensus_score`` where a vote decided, else its ``aggregated_score`` (every built-in
scorer gives a probability-like score in [0, 1]); greedy has none. Calibration error (ECE) bins
confidences into ten equal-width bins and weighs each bin's |accuracy - mean confidence| by its
share of rows.

Which signals to trust: ``score_auroc`` is the AUROC of the configuration's scorer over every
recorded candidate (not pruned) of every question, its score against whether its own answer is
right (a candidate without an answer is wrong); ``vote_share_auroc`` the same for the share of
candidates that gave each candidate's answer. 0.5 is chance; None when nothing was scored or
every candidate was right (or every one wrong).
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel

from llm_tts.answers import group_answers
from llm_tts.evaluation.records import ResultRow, is_correct
from llm_tts.selection.metrics import auroc, calibration_bins, expected_calibration_error

__all__ = [
    "ConfigurationSummary",
    "bootstrap_interval",
    "calibration_bins",
    "candidate_signals",
    "confidence",
    "expected_calibration_error",
    "format_table",
    "mean_flops",
    "summarize",
    "write_summary",
]

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
BOOTSTRAP_SAMPLES = 2000


class ConfigurationSummary(BaseModel):
    configuration: str
    strategy: str
    budget: int | None
    questions: int
    rows: int
    failed: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_generated_tokens: float
    mean_seconds: float
    mean_flops: float | None = None
    total_seconds: float
    ece: float | None
    mean_confidence: float | None
    score_auroc: float | None = None
    vote_share_auroc: float | None = None


def confidence(row: ResultRow) -> float | None:
    """The run's confidence in its answer (see the module doc), or None."""
    md = row.metadata
    if md is None or row.budget is None:
        return None
    value = next((v for v in (md.confidence, md.consensus_score, md.aggregated_score) if v is not None), None)
    return value if value is not None and 0.0 <= value <= 1.0 else None


def candidate_signals(rows: Iterable[ResultRow]) -> tuple[list[tuple[float, bool]], list[tuple[float, bool]]]:
    """(score, right) of every scored candidate and (vote share of its answer, right) of every
    candidate, over the rows' candidates that were not pruned (see the module doc)."""
    scored: list[tuple[float, bool]] = []
    shares: list[tuple[float, bool]] = []
    for row in rows:
        md = row.metadata
        if md is None or row.budget is None:
            continue
        pool = [c for c in md.candidates if c.status != "pruned"]
        right = [False] * len(pool)
        share = [0.0] * len(pool)
        for group in group_answers([c.answer for c in pool]):
            ok = is_correct(group.answer, row.gold)  # one verdict per equivalent answer
            for i in group.members:
                right[i], share[i] = ok, len(group.members) / len(pool)
        scored += [(c.score, ok) for c, ok in zip(pool, right) if c.score is not None]
        shares += list(zip(share, right))
    return scored, shares


def mean_flops(rows: Sequence[ResultRow]) -> float | None:
    """Mean estimated FLOPs of the rows; None when there are none or any of them does not know its own."""
    flops = [r.flops for r in rows]
    if not flops or any(f is None for f in flops):
        return None
    return sum(f for f in flops if f is not None) / len(flops)


def bootstrap_interval(
    per_question: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap of the mean over questions, reproducible by ``seed``."""
    if not per_question:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(per_question)
    means = sorted(sum(rng.choices(per_question, k=n)) / n for _ in range(samples))
    tail = (1.0 - level) / 2
    return means[int(tail * (samples - 1))], means[round((1.0 - tail) * (samples - 1))]


def summarize(rows: Iterable[ResultRow], *, seed: int = 0) -> list[ConfigurationSummary]:
    """One summary per configuration: greedy first, then each strategy (in the order the rows
    first name it) by budget. Failed rows count as wrong (dropping them would flatter a
    configuration that fails)."""
    by_configuration: dict[str, list[ResultRow]] = defaultdict(list)
    strategy_order: dict[str, int] = {}
    for row in rows:
        by_configuration[row.configuration].append(row)
        strategy_order.setdefault(row.strategy, len(strategy_order))

    def position(group: list[ResultRow]) -> tuple[bool, int, int]:
        first = group[0]
        return (first.budget is not None, strategy_order[first.strategy], first.budget or 0)

    out = []
    for name, group in sorted(by_configuration.items(), key=lambda item: position(item[1])):
        per_question: dict[str, list[bool]] = defaultdict(list)
        for row in group:
            per_question[row.question_id].append(row.correct and row.error is None)
        accuracy_by_question = [sum(v) / len(v) for v in per_question.values()]
        low, high = bootstrap_interval(accuracy_by_question, seed=seed)
        pairs = [(c, row.correct) for row in group if (c := confidence(row)) is not None]
        ok = [row for row in group if row.error is None]
        scored, shares = candidate_signals(group)
        out.append(
            ConfigurationSummary(
                configuration=name,
                strategy=group[0].strategy,
                budget=group[0].budget,
                questions=len(per_question),
                rows=len(group),
                failed=len(group) - len(ok),
                accuracy=sum(accuracy_by_question) / len(accuracy_by_question),
                ci_low=low,
                ci_high=high,
                mean_generated_tokens=sum(r.generated_tokens for r in ok) / len(ok) if ok else 0.0,
                mean_flops=mean_flops(ok),
                mean_seconds=sum(r.seconds for r in group) / len(group),
                total_seconds=sum(r.seconds for r in group),
                ece=expected_calibration_error(pairs),
                mean_confidence=sum(c for c, _ in pairs) / len(pairs) if pairs else None,
                score_auroc=auroc([s for s, _ in scored], [r for _, r in scored]) if scored else None,
                vote_share_auroc=auroc([s for s, _ in shares], [r for _, r in shares]) if shares else None,
            )
        )
    return out


def write_summary(directory: str | Path, summaries: Sequence[ConfigurationSummary]) -> tuple[Path, Path]:
    directory = Path(directory)
    csv_path, json_path = directory / SUMMARY_CSV, directory / SUMMARY_JSON
    fields = list(ConfigurationSummary.model_fields)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for s in summaries:
            writer.writerow(s.model_dump())
    json_path.write_text(json.dumps([s.model_dump() for s in summaries], indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path


def format_table(summaries: Sequence[ConfigurationSummary]) -> str:
    """A Markdown table (the CLI prints it; docs/guides/evaluation.md shows one)."""
    lines = [
        "| configuration | accuracy (95% CI) | mean generated tokens | mean FLOPs | s / question | ECE "
        "| score AUROC | vote share AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        ece, score_auc, vote_auc = (
            "-" if v is None else f"{v:.3f}" for v in (s.ece, s.score_auroc, s.vote_share_auroc)
        )
        flops = "-" if s.mean_flops is None else f"{s.mean_flops:.2e}"
        lines.append(
            f"| {s.configuration} | {s.accuracy:.3f} ({s.ci_low:.3f}-{s.ci_high:.3f}) | "
            f"{s.mean_generated_tokens:.0f} | {flops} | {s.mean_seconds:.2f} | {ece} | {score_auc} | {vote_auc} |"
        )
    return "\n".join(lines)
