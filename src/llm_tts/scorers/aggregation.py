"""Step scores -> one trajectory score (``tts_score_aggregation``, ``tts_window_size``).

Modes (higher is better, as for every score):

- ``min``: the weakest step decides (the usual choice for PRMs).
- ``mean``: the average step.
- ``max``: the strongest step.
- ``product``: the product of the step scores, meaningful for probability-like scores in
  [0, 1] (every built-in scorer returns those); negative scores are refused, since a product
  of two negatives would rank as good.
- ``last``: the score of the final step (for PRMs, the judgement of the whole solution).

``window=k`` aggregates only the last ``k`` step scores, so long trajectories are judged on
their recent steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from llm_tts.config import AGGREGATIONS
from llm_tts.errors import InvalidParameterError, UnknownNameError

_AGGREGATORS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "mean": lambda s: math.fsum(s) / len(s),
    "max": max,
    "product": math.prod,
    "last": lambda s: s[-1],
}
assert set(_AGGREGATORS) == set(AGGREGATIONS), "config.AGGREGATIONS and the aggregators must agree"


def aggregate(
    step_scores: Sequence[float],
    how: str = "min",
    window: int | None = None,
    *,
    empty: float | None = None,
) -> float:
    """Aggregate ``step_scores`` (in step order) with ``how`` over the last ``window`` steps.

    A trajectory without steps has no score: it raises :class:`InvalidParameterError` unless
    the caller says what an empty trajectory is worth with ``empty`` (e.g. ``-math.inf`` to rank
    it last). Unknown ``how`` raises :class:`UnknownNameError` listing the valid modes.
    """
    try:
        fn = _AGGREGATORS[how]
    except (KeyError, TypeError):
        raise UnknownNameError("aggregation", str(how), list(AGGREGATIONS), param="tts_score_aggregation") from None
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise InvalidParameterError("tts_window_size", window, "must be an integer >= 1 or None (all steps)")
    scores = list(step_scores)
    if window is not None:
        scores = scores[-window:]
    if not scores:
        if empty is None:
            raise InvalidParameterError("step_scores", [], "a trajectory without steps has no score to aggregate")
        return empty
    if any(not math.isfinite(s) for s in scores):
        raise InvalidParameterError("step_scores", scores, "every step score must be a finite number")
    if how == "product" and any(s < 0 for s in scores):
        raise InvalidParameterError(
            "step_scores", scores, "product aggregation needs non-negative (probability-like) scores; use min or mean"
        )
    return float(fn(scores))
