"""Test-time scaling strategies, found by name: ``get_strategy("beam_search")``.

Importing this package registers the built-in strategies; a new one is a function decorated
with :func:`register_strategy` that runs on a :class:`StrategyContext`. The modules by idea:
:mod:`.candidates` (the :class:`Beam` record), :mod:`.ranking` (ranking and selection),
:mod:`.context` (the run context and plain sampling), :mod:`.code_sampling` (sampling with code
execution), :mod:`.registry` (strategies by name), then one module per strategy.
"""

from llm_tts.strategies import (  # noqa: F401  (register)
    beam_search,
    deepconf,
    dvts,
    offline_bon,
    online_bon,
    particle_filtering,
    self_consistency,
)
from llm_tts.strategies.candidates import Beam, dedupe
from llm_tts.strategies.code_sampling import CodeExecutionSampler
from llm_tts.strategies.context import PlainSampler, Sampler, SearchStopped, StrategyContext, StrategyOutcome
from llm_tts.strategies.ranking import best_index, mean_logprob, select_index
from llm_tts.strategies.registry import (
    VOTING_SCORER,
    StrategySpec,
    fields_for,
    get_strategy,
    register_strategy,
    strategies_taking,
    strategy_names,
)

__all__ = [
    "VOTING_SCORER",
    "Beam",
    "CodeExecutionSampler",
    "PlainSampler",
    "Sampler",
    "SearchStopped",
    "StrategyContext",
    "StrategyOutcome",
    "StrategySpec",
    "best_index",
    "dedupe",
    "fields_for",
    "get_strategy",
    "mean_logprob",
    "register_strategy",
    "select_index",
    "strategies_taking",
    "strategy_names",
]
