"""``llm-tts fit-selector``: fit a selector on an evaluation's recorded candidates.

Every recorded run (a row of ``results.jsonl`` with a budget) gives one example per distinct
answer among its candidates (pruned ones left out, as the strategies choose among the rest): the
answer's features (:mod:`llm_tts.selection.features`) and whether it is right. Questions (not
rows) are split into a fitting part and a held-out part (``validation`` share, seeded), so a
question's runs never sit on both sides. A logistic regression (scikit-learn, the ``selector``
extra) on standardised features is fitted on the first part and judged on the second:

- AUROC of P(right) over held-out answers, beside the AUROC of the vote share alone;
- ECE of P(right) over held-out answers, and of the confidence of the answer it would select
  per held-out run (the number ``tts_metadata.confidence`` will carry: P(right) Platt-scaled on
  the fitting runs' picked answers, since the most probable answer of a run is right more often
  than its per-answer probability says);
- accuracy on held-out runs of selecting by it, against the vote (the largest group).

The saved file is plain JSON (:class:`~llm_tts.selection.Selector`); applying it needs numpy only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llm_tts.errors import BackendUnavailableError, DatasetError, InvalidParameterError
from llm_tts.evaluation.records import ResultRow, is_correct
from llm_tts.evaluation.store import ResultsStore
from llm_tts.selection import (
    FEATURE_NAMES,
    AnswerFeatures,
    Selector,
    answer_features,
    auroc,
    expected_calibration_error,
    most_probable,
    signals_of_info,
)

DEFAULT_VALIDATION = 0.3
MIN_EXAMPLES = 10


@dataclass(frozen=True)
class RunExamples:
    """One recorded run's answers: their features and whether each is right."""

    question_id: str
    answers: list[AnswerFeatures]
    right: list[bool]


def run_examples(rows: Sequence[ResultRow]) -> list[RunExamples]:
    """The examples of every run that produced at least one answer (see the module doc)."""
    out = []
    for row in rows:
        md = row.metadata
        if md is None or row.budget is None or row.error is not None:
            continue
        pool = [signals_of_info(c) for c in md.candidates if c.status != "pruned"]
        answers = answer_features(pool)
        if answers:
            out.append(RunExamples(row.question_id, answers, [is_correct(a.answer, row.gold) for a in answers]))
    return out


def split_questions(question_ids: Sequence[str], validation: float, seed: int) -> tuple[set[str], set[str]]:
    """(fitting, held-out) question ids: a seeded shuffle, ``validation`` of them held out."""
    if not 0.0 < validation < 1.0:
        raise InvalidParameterError("validation", validation, "must be a share strictly between 0 and 1")
    ids = sorted(set(question_ids))
    random.Random(seed).shuffle(ids)
    held = max(1, round(len(ids) * validation))
    if held >= len(ids):
        raise DatasetError(f"{len(ids)} question(s): too few to hold any out for validation", param="directory")
    return set(ids[held:]), set(ids[:held])


def fit_logistic(runs: Sequence[RunExamples], *, regularization: float = 1.0) -> Selector:
    """A logistic selector fitted on every answer of ``runs``."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise BackendUnavailableError(
            "fitting a selector needs scikit-learn: pip install 'llm-tts[selector]'"
        ) from None
    x = np.array([a.values for r in runs for a in r.answers], dtype=np.float64)
    y = np.array([ok for r in runs for ok in r.right], dtype=np.int64)
    if len(y) < MIN_EXAMPLES or y.min() == y.max():
        raise DatasetError(
            f"{len(y)} answers ({int(y.sum())} right): a selector needs at least {MIN_EXAMPLES} answers, some right "
            "and some wrong; record more runs with llm-tts eval",
            param="directory",
        )
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature: leave it unscaled (its coefficient goes to 0)
    model = LogisticRegression(C=regularization, max_iter=1000)
    model.fit((x - mean) / scale, y)
    selector = Selector(FEATURE_NAMES, mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]), {})
    # Platt scaling of the picked answer's logit, on the fitting runs' picked answers (see Selector)
    picked = [
        (ps[j], r.right[j])
        for r in runs
        for ps in [selector.probabilities(r.answers)]
        for j in [most_probable(r.answers, ps)]
    ]
    labels = [ok for _, ok in picked]
    if len(set(labels)) < 2:
        return selector
    logits = np.array([[np.log(max(p, 1e-12) / max(1 - p, 1e-12))] for p, _ in picked])
    platt = LogisticRegression(C=regularization, max_iter=1000).fit(logits, np.array(labels, dtype=np.int64))
    return replace(selector, calibration=(float(platt.coef_[0][0]), float(platt.intercept_[0])))


def evaluate(selector: Selector, runs: Sequence[RunExamples]) -> dict[str, Any]:
    """The held-out report (see the module doc)."""
    probs = [selector.probabilities(r.answers) for r in runs]
    flat_p = [p for ps in probs for p in ps]
    flat_y = [ok for r in runs for ok in r.right]
    share = [a.as_dict()["vote_share"] for r in runs for a in r.answers]
    chosen = [most_probable(r.answers, ps) for ps, r in zip(probs, runs)]
    voted = [most_probable(r.answers, [0.0] * len(r.answers)) for r in runs]  # the largest group
    selected = [(selector.confidence(ps[j]), r.right[j]) for ps, r, j in zip(probs, runs, chosen)]
    n = len(runs)
    return {
        "runs": n,
        "answers": len(flat_y),
        "auroc": auroc(flat_p, flat_y),
        "vote_share_auroc": auroc(share, flat_y),
        "ece": expected_calibration_error(zip(flat_p, flat_y)),
        "selected_ece": expected_calibration_error(selected),
        "selector_accuracy": sum(r.right[j] for r, j in zip(runs, chosen)) / n if n else None,
        "vote_accuracy": sum(r.right[j] for r, j in zip(runs, voted)) / n if n else None,
    }


def fit_selector_directory(
    directory: str | Path,
    out: str | Path,
    *,
    validation: float = DEFAULT_VALIDATION,
    seed: int = 0,
    strategies: Sequence[str] | None = None,
    plot: bool = True,
) -> tuple[Selector, dict[str, Any]]:
    """Fit on ``directory``'s results (runs of ``strategies`` labels only, when given), write the
    selector to ``out`` and, with ``plot``, a reliability diagram beside it; returns both and the report."""
    rows = [r for r in ResultsStore(directory).latest().values() if strategies is None or r.strategy in strategies]
    runs = run_examples(rows)
    if not runs:
        raise DatasetError(f"{directory}: no recorded run with an answer to fit on", param="directory")
    fit_ids, held_ids = split_questions([r.question_id for r in runs], validation, seed)
    fitting = [r for r in runs if r.question_id in fit_ids]
    held = [r for r in runs if r.question_id in held_ids]
    selector = fit_logistic(fitting)
    report = evaluate(selector, held)
    md = [r.metadata for r in rows if r.metadata is not None]
    info = {
        "fitted_on": {
            "directory": str(directory),
            "runs": len(fitting),
            "questions": len(fit_ids),
            "answers": sum(len(r.answers) for r in fitting),
            "strategies": sorted({r.strategy for r in rows}),
            "scorers": sorted({m.scorer for m in md}),
            "budgets": sorted({r.budget for r in rows if r.budget is not None}),
            "models": sorted({m.model for m in md}),
        },
        "validation": {"questions": len(held_ids), "seed": seed, **report},
    }
    selector = replace(selector, info=info)
    selector.save(out)
    if plot:
        from llm_tts.evaluation.plots import plot_calibration

        pairs = [(p, ok) for r in held for p, ok in zip(selector.probabilities(r.answers), r.right)]
        plot_calibration(
            {"selector, held-out answers": pairs},
            Path(out).with_suffix(".reliability.png"),
            title=f"selector reliability ({len(held_ids)} held-out questions)",
            xlabel="P(right) from the selector",
        )
    return selector, report
