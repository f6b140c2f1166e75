"""The two pictures of an evaluation, as PNG files (matplotlib, the ``eval`` extra).

- ``accuracy_vs_tokens.png``: accuracy against mean generated tokens per question, one line per
  strategy across its budgets (each point labelled with its budget, bars = bootstrap interval),
  greedy as a single star.
- ``accuracy_vs_flops.png``: the same against mean estimated FLOPs per question
  (``tts_metadata.cost.flops``: prompt, generated and scorer tokens, each with its model's
  parameters), written when the runs know their FLOPs (not for a remote model).
- ``reliability.png``: for each strategy (budgets pooled), accuracy against confidence in ten
  bins, with its expected calibration error in the legend; the diagonal is perfect calibration.

Each function returns the matplotlib Figure it saved, so its series can be inspected.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llm_tts.errors import BackendUnavailableError
from llm_tts.evaluation.records import ResultRow
from llm_tts.evaluation.summary import ConfigurationSummary, calibration_bins, confidence, expected_calibration_error

ACCURACY_PLOT = "accuracy_vs_tokens.png"
FLOPS_PLOT = "accuracy_vs_flops.png"
RELIABILITY_PLOT = "reliability.png"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailableError("plots need matplotlib: pip install 'llm-tts[eval]'") from None
    return plt


def plot_accuracy_vs_tokens(summaries: Sequence[ConfigurationSummary], path: str | Path, *, title: str = "") -> Any:
    return _plot_accuracy_against(
        summaries,
        lambda s: s.mean_generated_tokens,
        path,
        xlabel="mean generated tokens per question (every candidate)",
        title=title or "accuracy against compute (numbers: budget)",
    )


def plot_accuracy_vs_flops(summaries: Sequence[ConfigurationSummary], path: str | Path, *, title: str = "") -> Any:
    """Accuracy against mean estimated FLOPs per question (prompt and scorer work included);
    configurations whose FLOPs are unknown are left out."""
    return _plot_accuracy_against(
        [s for s in summaries if s.mean_flops is not None],
        lambda s: s.mean_flops or 0.0,
        path,
        xlabel="mean estimated FLOPs per question (2 x parameters x tokens computed)",
        title=title or "accuracy against FLOPs (numbers: budget)",
    )


def _plot_accuracy_against(
    summaries: Sequence[ConfigurationSummary],
    x_of: Callable[[ConfigurationSummary], float],
    path: str | Path,
    *,
    xlabel: str,
    title: str,
) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    lines: dict[str, list[ConfigurationSummary]] = defaultdict(list)
    for s in summaries:
        lines[s.strategy].append(s)
    for strategy, points in lines.items():
        points.sort(key=lambda s: s.budget or 0)
        x = [x_of(p) for p in points]
        y = [p.accuracy for p in points]
        err = [[p.accuracy - p.ci_low for p in points], [p.ci_high - p.accuracy for p in points]]
        if points[0].budget is None:
            ax.errorbar(x, y, yerr=err, fmt="*", markersize=12, color="black", capsize=3, label=strategy)
            continue
        ax.errorbar(x, y, yerr=err, fmt="-o", capsize=3, label=strategy)
        for p in points:
            ax.annotate(str(p.budget), (x_of(p), p.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=8)
    xs = [x_of(s) for s in summaries if x_of(s) > 0]
    if xs and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    _finish(plt, fig, ax, path, title, legend_size=8, legend_loc="best")
    return fig


def plot_reliability(rows: Iterable[ResultRow], path: str | Path, *, title: str = "") -> Any:
    pairs: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for row in rows:
        c = confidence(row)
        if c is not None:
            pairs[row.strategy].append((c, row.correct))
    return plot_calibration(
        pairs, path, title=title or "reliability", xlabel="confidence (selector's, else consensus_score, else score)"
    )


def plot_calibration(
    pairs: Mapping[str, Sequence[tuple[float, bool]]], path: str | Path, *, title: str, xlabel: str
) -> Any:
    """A reliability diagram: per label, accuracy against mean confidence in ten bins, with its ECE."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    for label, values in pairs.items():
        table = calibration_bins(values)
        ece = expected_calibration_error(values)
        if ece is None:
            continue
        ax.plot([c for c, _, _ in table], [a for _, a, _ in table], "-o", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    _finish(plt, fig, ax, path, title, legend_size=7, legend_loc="upper left")
    return fig


def _finish(plt: Any, fig: Any, ax: Any, path: str | Path, title: str, *, legend_size: int, legend_loc: str) -> None:
    """What both plots share: accuracy on y, title, grid, legend; written to ``path`` and closed."""
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc=legend_loc)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(
    directory: str | Path, summaries: Sequence[ConfigurationSummary], rows: Sequence[ResultRow]
) -> list[Path]:
    directory = Path(directory)
    model = next((r.metadata.model for r in rows if r.metadata), "")
    questions = len({r.question_id for r in rows})
    subtitle = f"{model}, {questions} questions" if model else f"{questions} questions"
    plot_accuracy_vs_tokens(summaries, directory / ACCURACY_PLOT, title=f"accuracy against compute ({subtitle})")
    written = [directory / ACCURACY_PLOT]
    if any(s.mean_flops is not None for s in summaries):
        plot_accuracy_vs_flops(summaries, directory / FLOPS_PLOT, title=f"accuracy against FLOPs ({subtitle})")
        written.append(directory / FLOPS_PLOT)
    plot_reliability(rows, directory / RELIABILITY_PLOT, title=f"reliability ({subtitle})")
    return [*written, directory / RELIABILITY_PLOT]
