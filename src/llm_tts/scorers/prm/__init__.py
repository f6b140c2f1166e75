"""The ``prm`` scorer: process reward models in the Qwen2.5-Math-PRM format.

:mod:`~llm_tts.scorers.prm.inputs` is what the PRM reads (format, architecture check, windowing);
the transformers runner and the vLLM runner each hold one and differ only in the model call.
Which runner a request gets follows the policy backend: vLLM's pooling runner next to a vLLM
policy, transformers otherwise. The PRM's folder is ``prm_model`` or ``$PRM_MODEL_PATH``.
"""

from __future__ import annotations

import os

from llm_tts.errors import CapabilityError
from llm_tts.scorers.base import Scorer, ScorerContext, register_scorer
from llm_tts.scorers.prm.inputs import PRM_ARCHITECTURE, PRM_SYSTEM, STEP_SEPARATOR, PRMStats, prm_messages
from llm_tts.scorers.prm.transformers_runner import LoadedPRM, PRMScorer, load_prm, release_prm_models
from llm_tts.scorers.prm.vllm_runner import VLLMPRMScorer, load_vllm_prm, release_vllm_prm_engines

PRM_PATH_ENV = "PRM_MODEL_PATH"

__all__ = [
    "PRM_ARCHITECTURE",
    "PRM_PATH_ENV",
    "PRM_SYSTEM",
    "STEP_SEPARATOR",
    "LoadedPRM",
    "PRMScorer",
    "PRMStats",
    "VLLMPRMScorer",
    "load_prm",
    "load_vllm_prm",
    "prm_messages",
    "release_prm_models",
    "release_vllm_prm_engines",
]


@register_scorer("prm")
def create_prm_scorer(ctx: ScorerContext) -> Scorer:
    """The PRM scorer for ``ctx``: on vLLM's pooling runner when the policy runs on vLLM."""
    path = ctx.prm_model or os.environ.get(PRM_PATH_ENV)
    if not path:
        raise CapabilityError(
            "scorer 'prm' needs a process reward model (Qwen2.5-Math-PRM format): pass its path as prm_model "
            f"(TTSEngine(prm_model=...), ChatTTS(prm_model=...)) or set {PRM_PATH_ENV}"
        )
    if getattr(ctx.backend, "name", None) == "vllm":  # policy on vLLM: the PRM runs on vLLM's pooling runner too
        return VLLMPRMScorer(path)
    return PRMScorer(path)
