"""The llm-tts service: an OpenAI-compatible FastAPI app over the TTS engine.

``create_app(engine, settings)`` builds an app; ``llm_tts.service:app`` is an importable ASGI
app built on first access from ``LLM_TTS_*`` environment settings (its model loads at startup),
e.g. ``uvicorn llm_tts.service:app --port 8001``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_tts.service.settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServiceSettings", "app", "create_app"]

_app: FastAPI | None = None


def create_app(*args: Any, **kwargs: Any) -> FastAPI:
    from llm_tts.service.application import create_app as _create

    return _create(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # Built lazily so importing llm_tts.service (e.g. for the CLI) loads neither FastAPI nor a model.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(settings=ServiceSettings.from_env())
        return _app
    raise AttributeError(f"module 'llm_tts.service' has no attribute {name!r}")
