"""A fitted selector (``llm-tts fit-selector``), applied with numpy alone.

The file is plain JSON, never a pickle (loading it runs no code)::

    {"format": "llm-tts-selector", "version": 2, "model": "logistic" | "gbm",
     "features": [...FEATURE_NAMES...], ...the model's numbers (llm_tts.selection.models)...,
     "confidence_calibration": {...} (llm_tts.selection.calibration),
     "fitted_on": {...}, "validation": {...}}

``P(right | answer) = sigmoid(model(x))`` where ``x`` is the answer's feature vector
(:mod:`llm_tts.selection.features`). The selector picks the answer with the highest probability
(ties: the larger group, then the first seen) and returns its best-scored candidate; its
confidence is that probability through the file's calibration. Version 1 files (logistic, a Platt
``confidence_calibration`` without ``method``) are read as they were written.

``tts_selector`` names a file, or a selector shipped with the package as ``builtin:NAME``
(:func:`builtin_selectors`; each says in its ``fitted_on`` what it was fitted to). A name or file
that cannot be read, is not JSON, or does not hold such a model raises
:class:`~llm_tts.errors.InvalidParameterError` naming ``tts_selector`` (the service answers 400).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from llm_tts.errors import InvalidParameterError
from llm_tts.selection.calibration import Calibration
from llm_tts.selection.features import FEATURE_NAMES, AnswerFeatures, CandidateSignals, answer_features
from llm_tts.selection.models import MODEL_KINDS, AnswerModel, BadModel

SELECTOR_FORMAT = "llm-tts-selector"
SELECTOR_VERSION = 2
READ_VERSIONS = (1, 2)
MAX_SELECTOR_BYTES = 4_000_000  # a boosted model of a few hundred small trees; refuse anything huge
PARAM = "tts_selector"
BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).with_name("builtin")


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
    """A fitted model over answer features and the calibration of its pick (see the module doc)."""

    features: tuple[str, ...]
    model: AnswerModel
    calibration: Calibration = field(default_factory=Calibration)
    info: Mapping[str, Any] = field(default_factory=dict)  # what it was fitted on, how it validated

    def confidence(self, probability: float) -> float:
        """The calibrated confidence of a picked answer of P(right) ``probability``."""
        return self.calibration(probability)

    def probabilities(self, answers: Sequence[AnswerFeatures]) -> list[float]:
        """P(right) of each answer."""
        if not answers:
            return []
        index = [FEATURE_NAMES.index(f) for f in self.features]
        x = np.array([[a.values[i] for i in index] for a in answers], dtype=np.float64)
        z = self.model.logits(x)
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
            "model": self.model.kind,
            "features": list(self.features),
            **self.model.to_json(),
            "confidence_calibration": self.calibration.to_json(),
            **dict(self.info),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: Any, *, where: str = "selector") -> Selector:
        """A selector from parsed JSON; :class:`InvalidParameterError` when it is not one."""

        def bad(why: str) -> InvalidParameterError:
            return InvalidParameterError(PARAM, where, f"not an llm-tts selector file: {why}")

        if not isinstance(data, dict) or data.get("format") != SELECTOR_FORMAT:
            raise bad(f'it must be a JSON object with "format": "{SELECTOR_FORMAT}"')
        kind = data.get("model")
        if (
            data.get("version") not in READ_VERSIONS
            or kind not in MODEL_KINDS
            or (data["version"] == 1 and kind != "logistic")
        ):
            raise bad(f"only versions {READ_VERSIONS} of models {', '.join(MODEL_KINDS)} are understood")
        features = data.get("features")
        if not isinstance(features, list) or not features or any(f not in FEATURE_NAMES for f in features):
            raise bad(f"'features' must name features among {', '.join(FEATURE_NAMES)}")
        try:
            model = MODEL_KINDS[kind].from_json(data, len(features))
            calibration = Calibration.from_json(data.get("confidence_calibration", {"method": "none"}))
        except BadModel as e:
            raise bad(str(e)) from None
        known = {"format", "version", "model", "features", "confidence_calibration", *model.to_json()}
        info = {k: v for k, v in data.items() if k not in known}
        return cls(tuple(features), model, calibration, info)


def most_probable(answers: Sequence[AnswerFeatures], probabilities: Sequence[float]) -> int:
    """The index of the most probable answer; ties to the larger group, then the first seen."""
    return max(range(len(answers)), key=lambda j: (probabilities[j], len(answers[j].members), -j))


def builtin_selectors() -> list[str]:
    """The names ``tts_selector`` takes for the selectors shipped with the package."""
    return sorted(BUILTIN_PREFIX + p.stem for p in BUILTIN_DIR.glob("*.json"))


def builtin_path(name: str) -> Path | None:
    """The shipped file of ``builtin:NAME`` (None: no such builtin)."""
    if name in builtin_selectors():
        return BUILTIN_DIR / f"{name[len(BUILTIN_PREFIX) :]}.json"
    return None


def load_selector(path: str | Path) -> Selector:
    """The selector ``path`` names: ``builtin:NAME`` or a JSON file (cached while it is unchanged)."""
    if isinstance(path, str) and path.startswith(BUILTIN_PREFIX):
        shipped = builtin_path(path)
        if shipped is None:
            names = ", ".join(builtin_selectors()) or "none"
            raise InvalidParameterError(PARAM, path, f"no such builtin selector (builtins: {names})")
        path = shipped
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
