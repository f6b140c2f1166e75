"""Each strategy declares the fields it takes and what it needs; planning refuses the rest.

No field is silently ignored: a strategy-owned field set for a strategy that does not take it is
an error naming the field and the strategies that do, in the library and from the service.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args

import pytest

from fakes import FakeScriptedBackend
from llm_tts.config import STRATEGY_FIELDS, StrategyField, TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import CapabilityError, InvalidParameterError
from llm_tts.evaluation.configurations import build_configurations
from llm_tts.planning import resolve_config
from llm_tts.strategies import get_strategy, strategies_taking, strategy_names

SELECTOR = Path(__file__).resolve().parents[1] / "data" / "selector.json"
# A value of each strategy-owned field that is valid on its own.
VALUES = {
    "num_paths": 3,
    "tts_num_trajectories": 3,
    "tts_candidates_per_step": 3,
    "tts_beam_size": 3,
    "tts_num_subtrees": 3,
    "tts_num_particles": 3,
    "tts_resampling_temperature": 2.0,
    "tts_max_steps": 3,
    "tts_step_max_tokens": 16,
    "tts_score_aggregation": "mean",
    "tts_window_size": 2,
    "tts_selection": "best",
    "tts_selector": str(SELECTOR),
    "tts_genselect": 2,
    "tts_route": [2, 4],
    "tts_route_threshold": 0.5,
    "tts_stop_confidence": 0.9,
    "tts_deepconf_mode": "offline",
    "tts_deepconf_warmup": 2,
    "tts_deepconf_percentile": 50.0,
    "tts_confidence_window": 4,
}


def test_the_declared_fields_are_config_fields_and_each_is_taken_by_some_strategy():
    assert set(get_args(StrategyField)) == STRATEGY_FIELDS == set(VALUES)
    assert set(TTSConfig.model_fields) >= STRATEGY_FIELDS
    for name in strategy_names():
        spec = get_strategy(name)
        assert spec.size_field in spec.fields and spec.fields <= STRATEGY_FIELDS
    assert all(strategies_taking(f) for f in STRATEGY_FIELDS)


@pytest.mark.parametrize(
    "strategy",
    ["self_consistency", "offline_bon", "online_bon", "beam_search", "dvts", "particle_filtering", "deepconf"],
)
def test_each_strategy_refuses_a_field_it_does_not_take_and_accepts_its_own(strategy):
    spec = get_strategy(strategy)
    foreign = sorted(STRATEGY_FIELDS - spec.fields)
    assert foreign  # every strategy has fields it does not take
    for field in foreign:
        with pytest.raises(InvalidParameterError) as e:
            resolve_config({"tts_strategy": strategy, field: VALUES[field]})
        assert e.value.param == field
        assert f"{strategy} does not take it" in str(e.value)
        assert all(taker in str(e.value) for taker in strategies_taking(field))
    # tts_genselect and tts_route exclude tts_selector, tts_stop_confidence and an explicit size
    exclusive = {"tts_genselect", "tts_route", "tts_route_threshold"}
    own = {field: VALUES[field] for field in spec.fields - exclusive if field != "tts_num_subtrees"}
    resolve_config({"tts_strategy": strategy, **own})  # all its own fields at once: accepted
    resolve_config({"tts_strategy": strategy, **{field: VALUES[field] for field in spec.fields & exclusive}})
    resolve_config({"tts_strategy": strategy})  # defaults are never "set": accepted


def test_the_budget_sets_the_size_field_without_counting_as_set_by_the_caller():
    config = resolve_config({"tts_strategy": "beam_search", "tts_budget": 3}).config
    assert config.tts_beam_size == 3


def test_deepconf_on_a_backend_without_top_logprobs_is_refused_when_planned_fake():
    backend = FakeScriptedBackend({})
    backend.capabilities = dataclasses.replace(backend.capabilities, max_top_logprobs=0)
    with pytest.raises(CapabilityError, match="deepconf needs top-k token logprobs"):
        TTSEngine(backend).plan("q", {"tts_strategy": "deepconf"})
    assert backend.calls == []  # nothing ran


def test_code_execution_is_refused_with_a_strategy_that_cannot_run_code_fake():
    engine = TTSEngine(FakeScriptedBackend({}))
    with pytest.raises(InvalidParameterError, match="does not combine with deepconf"):
        engine.plan("q", {"tts_strategy": "deepconf", "code_execution": True})


def test_eval_applies_a_common_step_field_only_to_the_strategies_that_take_it():
    configurations = build_configurations(
        ["self_consistency", "beam_search"], [2], common={"tts_max_steps": 3, "max_tokens": 32}
    )
    fields = {c.name: c.fields for c in configurations}
    assert all(f["max_tokens"] == 32 for f in fields.values())
    assert [name for name, f in fields.items() if "tts_max_steps" in f] == [
        c.name for c in configurations if c.fields.get("tts_strategy") == "beam_search"
    ]


def test_only_the_strategy_spec_reads_a_config_field_by_name():
    """A config field read through a string (getattr) is invisible to the type checker: only
    StrategySpec does it, for the size field its registration declares (typed as StrategyField)."""
    import pathlib
    import re

    src = pathlib.Path(__file__).resolve().parents[2] / "src" / "llm_tts"
    readers = {
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if re.search(r"getattr\((self\.)?(plan\.)?config, ", p.read_text())
    }
    assert readers <= {"strategies/registry.py", "planning.py"}, readers


def test_chat_tts_constructor_fields_are_defaults_a_call_with_another_strategy_keeps_where_taken():
    from llm_tts.integrations import ChatTTS

    llm = ChatTTS(backend="transformers", num_paths=2, tts_max_steps=3, max_tokens=32)
    beam = resolve_config(llm.tts_config(tts_strategy="beam_search")).config
    assert "num_paths" not in beam.model_fields_set and beam.tts_max_steps == 3 and beam.max_tokens == 32
    with pytest.raises(InvalidParameterError, match="self_consistency does not take it"):
        resolve_config(llm.tts_config())  # its own strategy (the default) and its own tts_max_steps
    with pytest.raises(InvalidParameterError, match="beam_search does not take it"):
        resolve_config(llm.tts_config(tts_strategy="beam_search", num_paths=4))  # one call's fields must fit
