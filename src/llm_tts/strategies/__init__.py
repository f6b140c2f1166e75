"""Test-time scaling strategies, found by name: ``get_strategy("beam_search")``.

Importing this package registers the built-in strategies; a new one is a function decorated
with :func:`register_strategy` (see :mod:`llm_tts.strategies.base`).
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
from llm_tts.strategies.base import (
    VOTING_SCORER,
    Beam,
    StrategyContext,
    StrategyOutcome,
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
    "StrategyContext",
    "StrategyOutcome",
    "StrategySpec",
    "fields_for",
    "get_strategy",
    "register_strategy",
    "strategies_taking",
    "strategy_names",
]
