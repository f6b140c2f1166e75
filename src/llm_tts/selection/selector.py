"""A selector fitted on recorded runs (``llm-tts fit-selector``), applied with numpy alone.

The file is plain JSON, never a pickle (loading it runs no code)::

    {"format": "llm-tts-selector", "version": 1, "model": "logistic",
     "features": [...FEATURE_NAMES...], "mean": [...], "scale": [...],
     "coefficients": [...], "intercept": b, "fitted_on": {...}, "validation": {...}}

``P(right | answer) = sigmoid(intercept + coefficients . (x - mean) / scale)`` where ``x`` is the
answer's feature vector (:mod:`llm_tts.selection.features`). The selector picks the answer with
the highest probability (ties: the larger group, then the first seen) and returns its best-scored
candidate. Its confidence is that probability recalibrated for the answer a selector picks (the
most probable of a run is right more often than an answer of that probability taken at random):
``sigmoid(slope * logit(p) + offset)`` with ``"confidence_calibration": {"slope", "offset"}``
fitted on the selected answers of the fitting runs (absent: ``p`` itself). A file that cannot be read, is not
JSON, or does not hold such a model raises :class:`~llm_tts.errors.InvalidParameterError` naming
``tts_selector`` (the service answers 400).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from llm_tts.errors import InvalidParameterError
from llm_tts.selection.features import FEATURE_NAMES, AnswerFeatures, CandidateSignals, answer_features

SELECTOR_FORMAT = "llm-tts-selector"
SELECTOR_VERSION = 1
MAX_SELECTOR_BYTES = 1_000_000  # a logistic model is a few hundred bytes; refuse anything huge
PARAM = "tts_selector"


@dataclass(frozen=True)
class Selection:
    """What a selector chose: a candidate's index, its answer and P(right), among ``answers``
    (every distinct answer, with ``probabilities``, P(right) of each)."""

    index: int
    answer: str
    confidence: float
    answers: tuple[AnswerFeatures, ...]
    probabilities: tuple[float, ...]

    @property
    def share(self) -> float:
        """The chosen answer's share of all candidates (its vote share)."""
        chosen = next(a for a in self.answers if a.answer == self.answer)
        return chosen.as_dict()["vote_share"]


@dataclass(frozen=True)
class Selector:
    """A fitted logistic model over answer features (see the module doc)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray
    intercept: float
    info: Mapping[str, Any]  # what it was fitted on and how it validated (for people, not the math)
    calibration: tuple[float, float] = (1.0, 0.0)  # (slope, offset) on the picked answer's logit

    def confidence(self, probability: float) -> float:
        """The calibrated confidence of a picked answer of P(right) ``probability``."""
        p = min(max(probability, 1e-12), 1 - 1e-12)
        slope, offset = self.calibration
        return float(1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, slope * math.log(p / (1 - p)) + offset)))))

    def probabilities(self, answers: Sequence[AnswerFeatures]) -> list[float]:
        """P(right) of each answer."""
        if not answers:
            return []
        index = [FEATURE_NAMES.index(f) for f in self.features]
        x = np.array([[a.values[i] for i in index] for a in answers], dtype=np.float64)
        z = self.intercept + ((x - self.mean) / self.scale) @ self.coefficients
        return [float(p) for p in 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))]

    def select(
        self, candidates: Sequence[CandidateSignals], equivalent: Callable[[str, str], bool] | None = None
    ) -> Selection | None:
        """The most probably right answer and its best-scored candidate (None: no answer at all)."""
        answers = answer_features(candidates, equivalent)
        if not answers:
            return None
        probs = self.probabilities(answers)
        best = most_probable(answers, probs)
        key = [-math.inf if c.score is None else c.score for c in candidates]
        members = answers[best].members
        index = max(members, key=lambda i: (key[i], -i))
        return Selection(index, answers[best].answer, self.confidence(probs[best]), tuple(answers), tuple(probs))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SELECTOR_FORMAT,
            "version": SELECTOR_VERSION,
            "model": "logistic",
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coefficients": self.coefficients.tolist(),
            "intercept": self.intercept,
            "confidence_calibration": {"slope": self.calibration[0], "offset": self.calibration[1]},
            **dict(self.info),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: Any, *, where: str = "selector") -> Selector:
        """A selector from parsed JSON; :class:`InvalidParameterError` when it is not one."""

        def bad(why: str) -> InvalidParameterError:
            return InvalidParameterError(PARAM, where, f"not an llm-tts selector file: {why}")

        if not isinstance(data, dict) or data.get("format") != SELECTOR_FORMAT:
            raise bad(f'it must be a JSON object with "format": "{SELECTOR_FORMAT}"')
        if data.get("version") != SELECTOR_VERSION or data.get("model") != "logistic":
            raise bad(f"only version {SELECTOR_VERSION} logistic models are understood")
        features = data.get("features")
        if not isinstance(features, list) or not features or any(f not in FEATURE_NAMES for f in features):
            raise bad(f"'features' must name features among {', '.join(FEATURE_NAMES)}")
        arrays = {}
        for name in ("mean", "scale", "coefficients"):
            value = data.get(name)
            if (
                not isinstance(value, list)
                or len(value) != len(features)
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            ):
                raise bad(f"'{name}' must be {len(features)} finite numbers, one per feature")
            arrays[name] = np.array(value, dtype=np.float64)
        if np.any(arrays["scale"] <= 0):
            raise bad("'scale' must be positive")
        intercept = data.get("intercept")
        if not isinstance(intercept, int | float) or isinstance(intercept, bool) or not math.isfinite(intercept):
            raise bad("'intercept' must be a finite number")
        calibration = data.get("confidence_calibration", {"slope": 1.0, "offset": 0.0})
        pair = (calibration.get("slope"), calibration.get("offset")) if isinstance(calibration, dict) else (None, None)
        slope, offset = (v if isinstance(v, int | float) and not isinstance(v, bool) else math.nan for v in pair)
        if not (math.isfinite(slope) and math.isfinite(offset)):
            raise bad("'confidence_calibration' must hold a finite 'slope' and 'offset'")
        known = {"format", "version", "model", "features", "mean", "scale", "coefficients", "intercept"}
        info = {k: v for k, v in data.items() if k not in known | {"confidence_calibration"}}
        weights = arrays["mean"], arrays["scale"], arrays["coefficients"]
        return cls(tuple(features), *weights, float(intercept), info, (float(slope), float(offset)))


def most_probable(answers: Sequence[AnswerFeatures], probabilities: Sequence[float]) -> int:
    """The index of the most probable answer; ties to the larger group, then the first seen."""
    return max(range(len(answers)), key=lambda j: (probabilities[j], len(answers[j].members), -j))


def load_selector(path: str | Path) -> Selector:
    """The selector in the JSON file at ``path`` (cached while the file is unchanged)."""
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        raise InvalidParameterError(PARAM, str(path), "no readable selector file there") from None
    return _load(str(p.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int, size: int) -> Selector:
    if size > MAX_SELECTOR_BYTES or not os.path.isfile(path):
        raise InvalidParameterError(
            PARAM, path, f"not a selector file (a regular file under {MAX_SELECTOR_BYTES} bytes)"
        )
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise InvalidParameterError(PARAM, path, "not an llm-tts selector file: it is not readable JSON") from None
    return Selector.from_json(data, where=path)
