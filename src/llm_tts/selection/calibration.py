"""How a selector turns the picked answer's P(right) into the confidence it reports.

The answer a selector picks is the most probable of its run, and the most probable of several is
right more often than an answer of that probability taken alone; so the confidence is a map
fitted on picked answers that the model did not see while it was fitted (``llm-tts
fit-selector`` cross-fits it by question), saved in the file as ``"confidence_calibration"``:

- ``{"method": "platt", "slope": a, "offset": b}``: ``sigmoid(a * logit(p) + b)`` (a file without
  ``method``, as version 1 wrote it, is Platt);
- ``{"method": "isotonic", "x": [...], "y": [...]}``: a non-decreasing step map, linear between
  its points (``numpy.interp``), flat outside them;
- ``{"method": "none"}``: ``p`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llm_tts.selection.models import BadModel, finite_number, finite_numbers

CalibrationMethod = Literal["platt", "isotonic", "none"]
CALIBRATION_METHODS: tuple[str, ...] = ("platt", "isotonic", "none")


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, z))))


@dataclass(frozen=True)
class Calibration:
    """A fitted map from P(right) to confidence (see the module doc)."""

    method: CalibrationMethod = "none"
    slope: float = 1.0
    offset: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __call__(self, probability: float) -> float:
        if self.method == "platt":
            return sigmoid(self.slope * logit(probability) + self.offset)
        if self.method == "isotonic":
            return float(np.interp(probability, self.x, self.y))
        return float(probability)

    def to_json(self) -> dict[str, Any]:
        if self.method == "platt":
            return {"method": "platt", "slope": self.slope, "offset": self.offset}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "none"}

    @classmethod
    def from_json(cls, data: Any) -> Calibration:
        if not isinstance(data, dict):
            raise BadModel("'confidence_calibration' must be a JSON object")
        method = data.get("method", "platt")
        if method == "platt":
            try:
                return cls("platt", finite_number(data, "slope"), finite_number(data, "offset"))
            except BadModel:
                raise BadModel("'confidence_calibration' must hold a finite 'slope' and 'offset'") from None
        if method == "isotonic":
            x, y = finite_numbers(data, "x"), finite_numbers(data, "y")
            if not 1 <= len(x) == len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise BadModel("an isotonic 'confidence_calibration' needs equally long, non-decreasing 'x' and 'y'")
            if np.any((y < 0) | (y > 1)):
                raise BadModel("an isotonic 'confidence_calibration' maps to 'y' within [0, 1]")
            return cls("isotonic", x=tuple(x.tolist()), y=tuple(y.tolist()))
        if method == "none":
            return cls()
        raise BadModel(f"'confidence_calibration' method must be one of {', '.join(CALIBRATION_METHODS)}")


def fit_calibration(
    probabilities: Sequence[float], right: Sequence[bool], method: CalibrationMethod, *, regularization: float = 1.0
) -> Calibration:
    """``method`` fitted on picked answers' P(right) and whether each was right (scikit-learn);
    ``"none"`` when they are all right or all wrong (nothing to fit)."""
    if method == "none" or len(set(right)) < 2:
        return Calibration()
    y = np.array(right, dtype=np.int64)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        z = np.array([[logit(p)] for p in probabilities])
        platt = LogisticRegression(C=regularization, max_iter=1000).fit(z, y)
        return Calibration("platt", float(platt.coef_[0][0]), float(platt.intercept_[0]))
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(np.array(probabilities, dtype=float), y)
    return Calibration("isotonic", x=tuple(iso.X_thresholds_.tolist()), y=tuple(iso.y_thresholds_.tolist()))
