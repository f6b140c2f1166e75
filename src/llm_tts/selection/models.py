"""The models a selector file holds, as plain JSON applied with numpy alone (never a pickle).

Each maps a matrix of answer features (one row per answer, columns in the file's feature order)
to log-odds that the answer is right:

- :class:`LinearModel` (``"model": "logistic"``): ``intercept + coefficients . (x - mean) / scale``;
- :class:`TreeEnsemble` (``"model": "gbm"``): ``intercept + learning_rate * sum(tree(x))`` over
  regression trees (gradient boosting), each tree as parallel arrays ``feature``, ``threshold``,
  ``left``, ``right`` and ``value`` (a leaf has ``left == -1``; ``x[feature] <= threshold`` goes left,
  the feature rounded to float32 first, as scikit-learn's trees compare).

``from_json`` checks every number and index, so a file that is not such a model is refused with a
reason (the caller turns it into an :class:`~llm_tts.errors.InvalidParameterError`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

MAX_TREES = 2000
MAX_TREE_NODES = 4096


class BadModel(ValueError):
    """The JSON does not hold a model of this kind (the message says why)."""


class AnswerModel(Protocol):
    @property
    def kind(self) -> str: ...

    def logits(self, x: np.ndarray) -> np.ndarray: ...

    def to_json(self) -> dict[str, Any]: ...


def finite_numbers(data: Mapping[str, Any], name: str, length: int | None = None) -> np.ndarray:
    """``data[name]`` as a float array, refused unless it is a list of finite numbers (of ``length``)."""
    value = data.get(name)
    if (
        not isinstance(value, list)
        or (length is not None and len(value) != length)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        size = "" if length is None else f"{length} "
        raise BadModel(f"'{name}' must be a list of {size}finite numbers")
    return np.array(value, dtype=np.float64)


def finite_number(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise BadModel(f"'{name}' must be a finite number")
    return float(value)


@dataclass(frozen=True)
class LinearModel:
    """Logistic regression on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray
    intercept: float
    kind: str = "logistic"

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + ((x - self.mean) / self.scale) @ self.coefficients

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coefficients": self.coefficients.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n_features: int) -> LinearModel:
        mean, scale, coefficients = (
            finite_numbers(data, name, n_features) for name in ("mean", "scale", "coefficients")
        )
        if np.any(scale <= 0):
            raise BadModel("'scale' must be positive")
        return cls(mean, scale, coefficients, finite_number(data, "intercept"))


@dataclass(frozen=True)
class Tree:
    """One regression tree as parallel node arrays (see the module doc)."""

    feature: np.ndarray  # int
    threshold: np.ndarray
    left: np.ndarray  # int, -1 at a leaf
    right: np.ndarray  # int
    value: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32).astype(np.float64)  # scikit-learn's trees compare float32 features
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        for _ in range(len(self.left)):  # a path visits each node once at most
            inner = self.left[node] >= 0
            if not inner.any():
                break
            goes_left = x[rows, self.feature[node].clip(0)] <= self.threshold[node]
            node = np.where(inner, np.where(goes_left, self.left[node], self.right[node]), node)
        return self.value[node]

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "value": self.value.tolist(),
        }

    @classmethod
    def from_json(cls, data: Any, n_features: int) -> Tree:
        if not isinstance(data, dict):
            raise BadModel("each tree must be a JSON object")
        left = finite_numbers(data, "left")
        n = len(left)
        if not 1 <= n <= MAX_TREE_NODES:
            raise BadModel(f"a tree must have 1 to {MAX_TREE_NODES} nodes")
        arrays = {name: finite_numbers(data, name, n) for name in ("feature", "threshold", "right", "value")}
        ints = {
            name: a.astype(np.int64)
            for name, a in (("left", left), ("right", arrays["right"]), ("feature", arrays["feature"]))
        }
        if any(
            np.any(ints[k] != a)
            for k, a in (("left", left), ("right", arrays["right"]), ("feature", arrays["feature"]))
        ):
            raise BadModel("a tree's 'left', 'right' and 'feature' must be whole numbers")
        inner = ints["left"] >= 0
        nodes = np.arange(n)
        # children point forward (no cycles), inside the tree; an inner node splits on a known feature
        if np.any(
            inner & ((ints["left"] <= nodes) | (ints["right"] <= nodes) | (ints["left"] >= n) | (ints["right"] >= n))
        ):
            raise BadModel("a tree's children must be later nodes of the same tree")
        if np.any(inner & ((ints["feature"] < 0) | (ints["feature"] >= n_features))):
            raise BadModel(f"a tree's 'feature' must index one of the {n_features} features")
        return cls(ints["feature"], arrays["threshold"], ints["left"], ints["right"], arrays["value"])


@dataclass(frozen=True)
class TreeEnsemble:
    """Gradient-boosted regression trees on the log-odds scale (see the module doc)."""

    trees: tuple[Tree, ...]
    learning_rate: float
    intercept: float
    kind: str = "gbm"

    def logits(self, x: np.ndarray) -> np.ndarray:
        total = np.full(len(x), self.intercept, dtype=np.float64)
        for tree in self.trees:
            total += self.learning_rate * tree.predict(x)
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "intercept": self.intercept,
            "learning_rate": self.learning_rate,
            "trees": [t.to_json() for t in self.trees],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n_features: int) -> TreeEnsemble:
        trees = data.get("trees")
        if not isinstance(trees, list) or not 1 <= len(trees) <= MAX_TREES:
            raise BadModel(f"'trees' must be a list of 1 to {MAX_TREES} trees")
        return cls(
            tuple(Tree.from_json(t, n_features) for t in trees),
            finite_number(data, "learning_rate"),
            finite_number(data, "intercept"),
        )


MODEL_KINDS: dict[str, Any] = {"logistic": LinearModel, "gbm": TreeEnsemble}
