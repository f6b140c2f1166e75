"""Generation backends behind one protocol, chosen by name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from llm_tts.backends.base import Backend, BackendCapabilities, SamplingParams
from llm_tts.errors import BackendUnavailableError, ModelLoadError, UnknownNameError

BackendFactory = Callable[..., Backend]


def _transformers(model: str | None, **options: Any) -> Backend:
    from llm_tts.backends.transformers_backend import TransformersBackend

    return TransformersBackend(model, **options)


def _vllm(model: str | None, **options: Any) -> Backend:
    from llm_tts.backends.vllm_backend import VLLMBackend

    return VLLMBackend(model, **options)


def _openai(model: str | None, **options: Any) -> Backend:
    from llm_tts.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(model, **options)


BACKENDS: dict[str, BackendFactory] = {"transformers": _transformers, "vllm": _vllm, "openai": _openai}


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def create_backend(name: str = "auto", model: str | None = None, **options: Any) -> Backend:
    """``auto`` picks vLLM when it is installed and starts, else transformers.

    The backend's ``name`` ("vllm" or "transformers") says which one was chosen; the engine
    reports it as ``tts_metadata.backend``.
    """
    if name == "auto":
        if vllm_available():
            try:
                return _vllm(model, **options)
            except (BackendUnavailableError, ModelLoadError) as e:  # e.g. an architecture vLLM lacks
                logging.getLogger(__name__).warning("backend='auto': vLLM is not usable (%s); using transformers", e)
        return _transformers(model, **options)
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise UnknownNameError("backend", name, [*BACKENDS, "auto"], param="backend") from None
    return factory(model, **options)


__all__ = ["BACKENDS", "Backend", "BackendCapabilities", "SamplingParams", "create_backend", "vllm_available"]
