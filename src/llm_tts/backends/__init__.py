"""Generation backends behind one protocol, chosen by name."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from llm_tts.backends.base import Backend, BackendCapabilities, SamplingParams
from llm_tts.errors import BackendUnavailableError, InvalidParameterError, ModelLoadError, UnknownNameError

BackendClass = Callable[..., Backend]  # a backend class: (model, **options) -> Backend


def _transformers() -> BackendClass:
    from llm_tts.backends.transformers_backend import TransformersBackend

    return TransformersBackend


def _vllm() -> BackendClass:
    from llm_tts.backends.vllm_backend import VLLMBackend

    return VLLMBackend


def _openai() -> BackendClass:
    from llm_tts.backends.openai_backend import OpenAIBackend

    return OpenAIBackend


# Each loader imports its backend class on first use: vLLM and torch take seconds to import.
BACKENDS: dict[str, Callable[[], BackendClass]] = {"transformers": _transformers, "vllm": _vllm, "openai": _openai}


def backend_option_names(name: str) -> list[str] | None:
    """The keyword options backend ``name`` takes (ChatTTS's ``backend_options``); None when it
    passes any other keyword on (vLLM hands extra options to its engine)."""
    params = inspect.signature(_loader(name)()).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def create_backend(name: str = "auto", model: str | None = None, **options: Any) -> Backend:
    """``auto`` picks vLLM when it is installed and starts, else transformers.

    The backend's ``name`` ("vllm" or "transformers") says which one was chosen; the engine
    reports it as ``tts_metadata.backend``. An option the chosen backend does not take is an
    InvalidParameterError before anything loads, except where ``auto`` falls back to
    transformers: options only vLLM takes are then dropped with a warning.
    """
    if name != "auto":
        _check_options(name, options)
        return _loader(name)()(model, **options)
    log = logging.getLogger(__name__)
    if vllm_available():
        _check_options("vllm", options)
        try:
            return _vllm()(model, **options)
        except (BackendUnavailableError, ModelLoadError) as e:  # e.g. an architecture vLLM lacks
            log.warning("backend='auto': vLLM is not usable (%s); using transformers", e)
    takes = backend_option_names("transformers") or list(options)
    dropped = sorted(set(options) - set(takes))
    if dropped:
        log.warning("backend='auto' runs transformers, which does not take %s: ignored", ", ".join(dropped))
    return _transformers()(model, **{k: v for k, v in options.items() if k in takes})


def _loader(name: str) -> Callable[[], BackendClass]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownNameError("backend", name, [*BACKENDS, "auto"], param="backend") from None


def _check_options(name: str, options: dict[str, Any]) -> None:
    takes = backend_option_names(name)
    if takes is None:
        return
    for key in options:
        if key not in takes:
            raise InvalidParameterError(
                "backend_options", key, f"is not an option of backend {name!r}; it takes: {', '.join(takes)}"
            )


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendCapabilities",
    "SamplingParams",
    "backend_option_names",
    "create_backend",
    "vllm_available",
]
