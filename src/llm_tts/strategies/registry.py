"""The strategy registry: each strategy by name, with what it takes, needs and combines with.

A strategy is a function ``run(ctx) -> StrategyOutcome`` registered with
:func:`register_strategy`; planning reads every cross-check from its :class:`StrategySpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llm_tts.config import STRATEGY_FIELDS, StrategyField, TTSConfig
from llm_tts.errors import UnknownNameError
from llm_tts.strategies.context import StrategyContext, StrategyOutcome

VOTING_SCORER = "majority_vote"  # not a Scorer object: self_consistency's vote itself
# Backend capabilities a strategy can require: continuing partial answers, top-k logprobs.
Requirement = Literal["continuation", "top_logprobs"]
StrategyFn = Callable[[StrategyContext], StrategyOutcome]


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: how to run it and what it takes, needs and combines with.

    ``fields``: the strategy-owned config fields it reads (:data:`~llm_tts.config.StrategyField`);
    ``requires``: backend capabilities it cannot run without; ``code_execution``: whether its paths
    can run code (a strategy that watches each path as one sampled segment cannot). Planning derives
    every cross-check from these (:mod:`llm_tts.planning`).
    """

    name: str
    run: StrategyFn
    size_field: StrategyField  # the TTSConfig field tts_budget maps onto
    size_cap: int  # the largest value allowed for that field
    fields: frozenset[StrategyField]
    needs_scorer: bool  # False: the vote decides, a scorer only breaks ties
    requires: frozenset[Requirement] = frozenset()
    code_execution: bool = True
    budget_unit: StrategyField | None = None  # tts_budget is divided by this field to give size_field (dvts)

    def size(self, config: TTSConfig) -> int:
        value: int = getattr(config, self.size_field)  # a StrategyField: checked against TTSConfig by a test
        return value

    def size_for_budget(self, config: TTSConfig, budget: int) -> int:
        """The main size ``tts_budget`` sets: the budget itself, or budget / unit (at least 1)."""
        return budget if self.budget_unit is None else max(1, budget // getattr(config, self.budget_unit))

    @property
    def continues_steps(self) -> bool:
        return "continuation" in self.requires

    @property
    def default_scorer(self) -> str:
        return "entropy" if self.needs_scorer else VOTING_SCORER


_STRATEGIES: dict[str, StrategySpec] = {}


def register_strategy(
    name: str,
    *,
    size_field: StrategyField,
    size_cap: int,
    fields: Sequence[StrategyField],
    needs_scorer: bool = True,
    requires: Sequence[Requirement] = (),
    code_execution: bool = True,
    budget_unit: StrategyField | None = None,
) -> Callable[[StrategyFn], StrategyFn]:
    """Register ``run`` under ``name`` with what it takes (``fields``, which include ``size_field``
    and ``budget_unit``), needs and combines with: see :class:`StrategySpec`."""

    def deco(fn: StrategyFn) -> StrategyFn:
        taken = frozenset(fields) | {size_field} | ({budget_unit} if budget_unit else set())
        _STRATEGIES[name] = StrategySpec(
            name, fn, size_field, size_cap, taken, needs_scorer, frozenset(requires), code_execution, budget_unit
        )
        return fn

    return deco


def fields_for(strategy: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` less the strategy-owned ones ``strategy`` does not take: one set of sizes shared
    by a sweep over strategies (an unknown strategy keeps them all; its name is refused later)."""
    spec = _STRATEGIES.get(strategy)
    if spec is None:
        return dict(fields)
    return {k: v for k, v in fields.items() if k not in STRATEGY_FIELDS or k in spec.fields}


def strategies_taking(field: str) -> list[str]:
    """The registered strategies that take ``field`` (sorted)."""
    return sorted(name for name, spec in _STRATEGIES.items() if field in spec.fields)


def strategy_names() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> StrategySpec:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UnknownNameError("strategy", name, strategy_names(), param="tts_strategy") from None
