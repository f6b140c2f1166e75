"""The scorer contract. Higher scores are better, for every scorer.

A scorer scores the steps of trajectories. Strategies hand it a batch of
:class:`ScoreRequest` and never special-case its type. ``first_unscored`` lets a scorer work
incrementally: a beam that grew by one step asks for one new score, and a PRM can reuse the
cached prefix instead of re-scoring the whole trajectory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from llm_tts.errors import InvalidParameterError, UnknownNameError
from llm_tts.types import Step

if TYPE_CHECKING:
    from llm_tts.backends.base import Backend


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    question: str  # the user's question, for verifiers and PRMs
    steps: Sequence[Step]  # all steps of the trajectory so far
    first_unscored: int = 0  # score steps[first_unscored:]; earlier ones were scored already

    def __post_init__(self) -> None:
        n = len(self.steps)
        if (
            isinstance(self.first_unscored, bool)
            or not isinstance(self.first_unscored, int)
            or not 0 <= self.first_unscored <= n
        ):
            raise InvalidParameterError(
                "first_unscored", self.first_unscored, f"must be an integer in [0, {n}] (the number of steps)"
            )

    @property
    def new_steps(self) -> Sequence[Step]:
        """The steps this request asks scores for: ``steps[first_unscored:]``."""
        return self.steps[self.first_unscored :]


class Scorer(ABC):
    name: ClassVar[str]
    top_logprobs_needed: ClassVar[int] = 0  # how many top-k logprobs generation must return
    needs_logprobs: ClassVar[bool] = False

    @abstractmethod
    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """For each request, the scores of ``steps[first_unscored:]`` (one float per step)."""

    def close(self) -> None:  # noqa: B027  (optional: most scorers hold nothing to release)
        """Release models or caches this scorer holds."""


@dataclass(frozen=True, slots=True)
class ScorerContext:
    """What a scorer factory may use: the policy backend and the PRM path, if any."""

    backend: Backend
    prm_model: str | None = None


ScorerFactory = Callable[[ScorerContext], Scorer]
_REGISTRY: dict[str, ScorerFactory] = {}


def register_scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    def deco(factory: ScorerFactory) -> ScorerFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def scorer_names() -> list[str]:
    return sorted(_REGISTRY)


def create_scorer(name: str, ctx: ScorerContext) -> Scorer:
    """Build a scorer; raises CapabilityError when it cannot run on ``ctx.backend``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("scorer", name, scorer_names(), param="tts_scorer") from None
    return factory(ctx)
