"""Scorers: every module is imported here so that ``create_scorer(name, ctx)`` finds it.

``majority_vote`` is not a step scorer: it belongs to the self-consistency strategy.
"""

from llm_tts.scorers import llm_judge, logprob, prm  # noqa: F401  (registers the scorers)
from llm_tts.scorers.aggregation import aggregate
from llm_tts.scorers.base import Scorer, ScorerContext, ScoreRequest, create_scorer, register_scorer, scorer_names

__all__ = ["ScoreRequest", "Scorer", "ScorerContext", "aggregate", "create_scorer", "register_scorer", "scorer_names"]
