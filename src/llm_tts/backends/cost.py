"""What a run computed: tokens per kind and an estimate of its floating-point operations.

A run's :class:`RunCost` adds up, call by call, the prompt tokens its backend processed and those
served from the prefix cache, and the tokens its scorer's model ran. FLOPs are estimated the way
test-time scaling papers report compute, ``2 x parameters x tokens`` (a forward pass costs about
two operations per weight per token), summed per model:

    flops = 2 * model_parameters * (prompt_tokens - cached_prompt_tokens + generated_tokens)
          + 2 * scorer_parameters * (scorer_tokens - scorer_cached_tokens)

It ignores attention's term that grows with the context (the score of each token against every
earlier one), so long contexts cost more than it says. Parameters are every weight of the model
(embeddings included), counted from the loaded model or its checkpoint's safetensors headers; a
remote model's are unknown, and then so are the FLOPs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Protocol, runtime_checkable

from llm_tts.backends.usage import UsageMeter
from llm_tts.types import Trajectory


@runtime_checkable
class CountsParameters(Protocol):
    """A backend or scorer that knows how many weights its model has (None: unknown)."""

    @property
    def parameter_count(self) -> int | None: ...


def parameter_count(model_owner: object) -> int | None:
    """The parameters of a backend's or scorer's model; None when it does not know them."""
    return model_owner.parameter_count if isinstance(model_owner, CountsParameters) else None


def checkpoint_parameters(folder: str | Path) -> int | None:
    """Weights stored in a model folder's safetensors files, read from their headers (no tensor is
    loaded); None when it has none. A quantized checkpoint's packed weights count as stored."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        total += sum(prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return total


@dataclass
class RunCost:
    """Token counts of one run, added to call by call (see the module doc)."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    scorer_tokens: int = 0
    scorer_cached_tokens: int = 0

    def add_generation(self, call: UsageMeter, prompts: Sequence[Sequence[int]]) -> None:
        """One backend call; a backend that reported nothing prefilled each prompt once."""
        if call.requests:
            self.prompt_tokens += call.prompt_tokens
            self.cached_prompt_tokens += call.cached_tokens
        else:
            self.prompt_tokens += sum(len(p) for p in prompts)

    def add_scoring(self, call: UsageMeter) -> None:
        """One scorer call: every token its model ran (a judge's prompts and answers, a PRM's inputs)."""
        self.scorer_tokens += call.prompt_tokens + call.completion_tokens
        self.scorer_cached_tokens += call.cached_tokens


def estimate_flops(
    cost: RunCost, generated_tokens: int, model_parameters: int | None, scorer_parameters: int | None
) -> float | None:
    """The module doc's formula; None when a model that ran has no known parameter count."""
    if model_parameters is None or (cost.scorer_tokens and scorer_parameters is None):
        return None
    computed = cost.prompt_tokens - cost.cached_prompt_tokens + generated_tokens
    flops = 2.0 * model_parameters * computed
    if cost.scorer_tokens:
        assert scorer_parameters is not None
        flops += 2.0 * scorer_parameters * (cost.scorer_tokens - cost.scorer_cached_tokens)
    return flops


def injected_tokens(trajectories: Iterable[Trajectory]) -> int:
    """Tokens injected into the trajectories (code outputs, forced text), each injection counted
    once: candidates that share a prefix share its segments."""
    seen: set[tuple[int, ...]] = set()
    total = 0
    for trajectory in trajectories:
        path: tuple[int, ...] = ()
        for segment in trajectory.segments:
            path = (*path, id(segment))
            if not segment.is_model and path not in seen:
                seen.add(path)
                total += len(segment)
    return total
