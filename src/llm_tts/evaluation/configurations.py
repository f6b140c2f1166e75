"""What an evaluation runs: strategies with their fields, across budgets and seeds.

A strategy is written ``name[:field=value,...]``, e.g. ``beam_search:tts_beam_size=4,tts_scorer=entropy``;
values are read as JSON where they parse (``4``, ``0.5``, ``null``) and as text otherwise. Each
strategy runs once per budget (``tts_budget``), except ``greedy``: one temperature-0 path, the
baseline, whatever the budget. Every configuration is checked here, before a model loads, with
the engine's own rules (:func:`llm_tts.planning.resolve_config`), so an unknown strategy or field or
a budget out of range is one typed error naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_tts.config import TTSConfig
from llm_tts.errors import InvalidParameterError, UnknownNameError
from llm_tts.planning import resolve_config
from llm_tts.strategies import fields_for, strategy_names

GREEDY = "greedy"
# The baseline: one path at temperature 0, its answer taken as is.
GREEDY_FIELDS: dict[str, Any] = {"tts_strategy": "self_consistency", "num_paths": 1, "temperature": 0.0}


@dataclass(frozen=True)
class Configuration:
    """One point of a curve: a strategy (with its fields) at one budget."""

    strategy: str  # the label, as written: "beam_search:tts_scorer=entropy", "greedy"
    budget: int | None  # None for greedy
    fields: Mapping[str, Any] = field(default_factory=dict)  # the TTS fields of every request (no seed)

    @property
    def name(self) -> str:
        return self.strategy if self.budget is None else f"{self.strategy}@{self.budget}"

    def request_fields(self, seed: int | None) -> dict[str, Any]:
        return {**self.fields, "seed": seed}

    def tts_config(self, seed: int | None) -> TTSConfig:
        """The validated config of one request, with the budget applied (as the engine runs it)."""
        return resolve_config(TTSConfig.create(**self.request_fields(seed))).config


def parse_strategy(text: str) -> tuple[str, dict[str, Any]]:
    """``"beam_search:tts_beam_size=4"`` -> ``("beam_search", {"tts_beam_size": 4})``."""
    name, _, rest = text.strip().partition(":")
    valid = [GREEDY, *strategy_names()]
    if name not in valid:
        raise UnknownNameError("strategy", name, valid, param="strategies")
    return name, parse_fields(rest, param="strategies")


def parse_fields(text: str, *, param: str) -> dict[str, Any]:
    """``"tts_beam_size=4,tts_scorer=entropy"`` -> ``{"tts_beam_size": 4, "tts_scorer": "entropy"}``
    (names are checked with the configurations, by the config model itself)."""
    fields: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InvalidParameterError(param, text, f"{item!r} is not field=value")
        if key in ("tts_strategy", "tts_budget", "seed"):
            raise InvalidParameterError(param, text, f"{key} is set by the strategy name, --budgets and --seeds")
        fields[key] = _value(value.strip())
    return fields


def parse_budgets(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]`` (each >= 1; the strategies' own caps are checked later)."""
    try:
        budgets = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise InvalidParameterError("budgets", text, "must be comma-separated integers, e.g. 1,2,4,8") from None
    if not budgets or any(b < 1 for b in budgets):
        raise InvalidParameterError("budgets", text, "must be comma-separated integers >= 1, e.g. 1,2,4,8")
    return sorted(set(budgets))


def build_configurations(
    strategies: Sequence[str],
    budgets: Sequence[int],
    *,
    common: Mapping[str, Any] | None = None,
    seeds: Sequence[int | None] = (None,),
    greedy: bool = True,
) -> list[Configuration]:
    """Every (strategy, budget) to run, greedy first; each checked for every seed now.

    ``common`` fields (e.g. ``max_tokens``) apply to every configuration whose strategy takes them
    (a step field such as ``tts_max_steps`` only to step searches); a strategy's own fields win."""
    specs = [(s.strip(), *parse_strategy(s)) for s in strategies]
    if greedy and not any(name == GREEDY for _, name, _ in specs):
        specs.insert(0, (GREEDY, GREEDY, {}))
    configurations: list[Configuration] = []
    for label, name, fields in specs:
        strategy = GREEDY_FIELDS["tts_strategy"] if name == GREEDY else name
        base = {**fields_for(strategy, common or {}), **fields}
        if name == GREEDY:
            configurations.append(Configuration(label, None, {**base, **GREEDY_FIELDS}))
            continue
        for budget in budgets:
            configurations.append(Configuration(label, budget, {**base, "tts_strategy": name, "tts_budget": budget}))
    names = [c.name for c in configurations]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidParameterError("strategies", repeated[0], "is listed twice")
    for configuration in configurations:
        for seed in seeds:
            configuration.tts_config(seed)  # raises the typed error a run would raise
    return configurations


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
