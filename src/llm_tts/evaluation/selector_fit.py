"""``llm-tts fit-selector``: fit a selector on an evaluation's recorded candidates.

Every recorded run (a row of ``results.jsonl`` with a budget) gives one example per distinct
answer among its candidates (pruned ones left out, as the strategies choose among the rest): the
answer's features (:mod:`llm_tts.selection.features`) and whether it is right. Questions (not
rows) are split into a fitting part and a held-out part (``validation`` share, seeded), so a
question's runs never sit on both sides. A model (scikit-learn, the ``selector`` extra: a
logistic regression on standardised features by default, or ``--model gbm``, gradient-boosted
trees exported as plain JSON trees) is fitted on the first part, and the confidence of the answer
it picks is calibrated (isotonic by default, or Platt) on out-of-fold picks of the first part
(:func:`fit_selector`). It is judged on the second:

- AUROC of P(right) over held-out answers, beside the AUROC of the vote share alone;
- ECE of P(right) over held-out answers, and of the calibrated confidence of the answer it
  would select per held-out run (the number ``tts_metadata.confidence`` carries);
- accuracy on held-out runs of selecting by it, against the vote (the largest group).

The saved file is plain JSON (:class:`~llm_tts.selection.Selector`); applying it needs numpy only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llm_tts.errors import BackendUnavailableError, DatasetError, InvalidParameterError
from llm_tts.evaluation.records import ResultRow, is_correct
from llm_tts.evaluation.store import ResultsStore
from llm_tts.selection import (
    FEATURE_NAMES,
    AnswerFeatures,
    CalibrationMethod,
    LinearModel,
    Selector,
    TreeEnsemble,
    answer_features,
    auroc,
    expected_calibration_error,
    fit_calibration,
    most_probable,
    signals_of_info,
)
from llm_tts.selection.models import AnswerModel, Tree

DEFAULT_VALIDATION = 0.3
MIN_EXAMPLES = 10
CALIBRATION_FOLDS = 5
GBM_TREES = 100
GBM_LEARNING_RATE = 0.05
ModelKind = Literal["logistic", "gbm"]
MODEL_CHOICES: tuple[str, ...] = ("logistic", "gbm")


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


def _training_matrix(runs: Sequence[RunExamples]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([a.values for r in runs for a in r.answers], dtype=np.float64)
    y = np.array([ok for r in runs for ok in r.right], dtype=np.int64)
    if len(y) < MIN_EXAMPLES or y.min() == y.max():
        raise DatasetError(
            f"{len(y)} answers ({int(y.sum())} right): a selector needs at least {MIN_EXAMPLES} answers, some right "
            "and some wrong; record more runs with llm-tts eval",
            param="directory",
        )
    return x, y


def _sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(
            "fitting a selector needs scikit-learn: pip install 'llm-tts[selector]'"
        ) from None


def fit_model(runs: Sequence[RunExamples], kind: ModelKind = "logistic", *, regularization: float = 1.0) -> AnswerModel:
    """P(right) of an answer from its features, fitted on every answer of ``runs``: a logistic
    regression on standardised features, or gradient-boosted trees (shallow, few: the sets are small)."""
    _sklearn()
    x, y = _training_matrix(runs)
    if kind == "gbm":
        from sklearn.ensemble import GradientBoostingClassifier

        gbm = GradientBoostingClassifier(
            n_estimators=GBM_TREES,
            learning_rate=GBM_LEARNING_RATE,
            max_depth=2,
            min_samples_leaf=5,
            subsample=0.8,
            random_state=0,
        ).fit(x, y)
        trees = tuple(
            Tree(
                t.tree_.feature.astype(np.int64).clip(-1),
                t.tree_.threshold.astype(np.float64),
                t.tree_.children_left.astype(np.int64),
                t.tree_.children_right.astype(np.int64),
                t.tree_.value[:, 0, 0].astype(np.float64),
            )
            for (t,) in gbm.estimators_
        )
        model = TreeEnsemble(trees, GBM_LEARNING_RATE, 0.0)
        # the prior's log-odds: whatever the trees do not explain of sklearn's own raw score
        rest = gbm.decision_function(x) - model.logits(x)
        if np.ptp(rest) > 1e-6:  # the exported trees must be sklearn's model, to the last leaf
            raise RuntimeError(f"gradient-boosted trees exported wrongly (log-odds off by {np.ptp(rest):.3g})")
        return TreeEnsemble(trees, GBM_LEARNING_RATE, float(rest.mean()))
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature: leave it unscaled (its coefficient goes to 0)
    lr = LogisticRegression(C=regularization, max_iter=1000).fit((x - mean) / scale, y)
    return LinearModel(mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))


def picked(selector: Selector, runs: Sequence[RunExamples]) -> list[tuple[float, bool]]:
    """(P(right), right) of the answer ``selector`` picks in each run."""
    out = []
    for r in runs:
        ps = selector.probabilities(r.answers)
        j = most_probable(r.answers, ps)
        out.append((ps[j], r.right[j]))
    return out


def fit_selector(
    runs: Sequence[RunExamples],
    kind: ModelKind = "logistic",
    calibration: CalibrationMethod = "isotonic",
    *,
    folds: int = CALIBRATION_FOLDS,
    seed: int = 0,
) -> Selector:
    """A selector fitted on every answer of ``runs``, its confidence calibrated on picked answers
    the model did not see: the questions are cut into ``folds``, a model fitted on all folds but
    one picks the answers of the one left, and the calibration is fitted on those picks (the
    in-sample picks would teach it the model's own overconfidence)."""
    model = fit_model(runs, kind)
    selector = Selector(FEATURE_NAMES, model)
    if calibration == "none":
        return selector
    ids = sorted({r.question_id for r in runs})
    random.Random(seed).shuffle(ids)
    fold_of = {q: i % folds for i, q in enumerate(ids)}
    pairs: list[tuple[float, bool]] = []
    for k in range(min(folds, len(ids))):
        rest = [r for r in runs if fold_of[r.question_id] != k]
        left = [r for r in runs if fold_of[r.question_id] == k]
        try:
            pairs += picked(Selector(FEATURE_NAMES, fit_model(rest, kind)), left)
        except DatasetError:
            continue  # this fold's rest is all right or all wrong: it teaches the calibration nothing
    fitted = fit_calibration([p for p, _ in pairs], [ok for _, ok in pairs], calibration)
    return replace(selector, calibration=fitted)


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
    model: ModelKind = "logistic",
    calibration: CalibrationMethod = "isotonic",
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
    selector = fit_selector(fitting, model, calibration, seed=seed)
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
