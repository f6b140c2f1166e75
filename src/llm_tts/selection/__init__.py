"""Selection that knows when it is right: answer features, signal quality metrics, and a
selector fitted on recorded runs (:mod:`.features`, :mod:`.metrics`, :mod:`.selector`)."""

from llm_tts.selection.calibration import CALIBRATION_METHODS, Calibration, CalibrationMethod, fit_calibration
from llm_tts.selection.features import (
    FEATURE_NAMES,
    AnswerFeatures,
    CandidateSignals,
    answer_features,
    signals_of_info,
)
from llm_tts.selection.metrics import auroc, calibration_bins, expected_calibration_error
from llm_tts.selection.models import LinearModel, TreeEnsemble
from llm_tts.selection.selector import (
    BUILTIN_PREFIX,
    Selection,
    Selector,
    builtin_path,
    builtin_selectors,
    load_selector,
    most_probable,
)

__all__ = [
    "BUILTIN_PREFIX",
    "CALIBRATION_METHODS",
    "FEATURE_NAMES",
    "AnswerFeatures",
    "Calibration",
    "CalibrationMethod",
    "CandidateSignals",
    "LinearModel",
    "Selection",
    "Selector",
    "TreeEnsemble",
    "answer_features",
    "auroc",
    "builtin_path",
    "builtin_selectors",
    "calibration_bins",
    "expected_calibration_error",
    "fit_calibration",
    "load_selector",
    "most_probable",
    "signals_of_info",
]
