"""The app factory: settings, the serving object, the router, error handlers and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from llm_tts import __version__
from llm_tts.engine import TTSEngine
from llm_tts.service.auth import APIKeyMiddleware
from llm_tts.service.errors import install_error_handlers
from llm_tts.service.limits import BodyLimitMiddleware
from llm_tts.service.metrics import LiveState, MetricsMiddleware, ServiceMetrics
from llm_tts.service.request_context import install_log_record_request_id
from llm_tts.service.request_id import RequestIdMiddleware
from llm_tts.service.routes import ServiceState, router
from llm_tts.service.serving import ServingChat
from llm_tts.service.session_routes import router as session_router
from llm_tts.service.session_serving import ServingSessions
from llm_tts.service.settings import ServiceSettings
from llm_tts.service.viewer_routes import router as viewer_router

DESCRIPTION = """Test-time scaling of LLM reasoning behind OpenAI's chat and text completions APIs.

Send the TTS fields (`tts_strategy`, `num_paths`, `tts_scorer`, ...) in the request body (what the
OpenAI SDK's `extra_body` sends), or use the path form `/v1/{strategy}/chat/completions` and
`/v1/{strategy}/{scorer}/chat/completions`. Each choice carries `tts_metadata`. With
`stream=true` the search's progress arrives as chunks with `choices[0].tts_progress`.
`/v1/completions` takes one prompt, as text or token ids, used as it is (no chat template), with
the same TTS fields and token output (vLLM's shape).

Sessions (`POST /sessions`) record every completion sent to their base URL `/sessions/{id}` with
its token-level truth, and turn the records into RL training samples (`/sessions/{id}/samples`)."""
DOCS_ASSETS_PATH = "/docs-assets"


def create_app(
    engine: TTSEngine | None = None,
    settings: ServiceSettings | None = None,
    *,
    close_engine: bool | None = None,
) -> FastAPI:
    """The ASGI app. Without ``engine`` one is built at startup from ``settings`` (and closed at
    shutdown); a given engine is left open unless ``close_engine`` is True."""
    settings = settings or ServiceSettings.from_env()
    close_engine = close_engine if close_engine is not None else engine is None
    state = ServiceState(settings, None if engine is None else ServingChat(engine, settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.serving is None:
            built = await anyio.to_thread.run_sync(
                lambda: TTSEngine.create(
                    settings.model, settings.backend, prm_model=settings.prm_model, **settings.backend_options()
                )
            )
            state.serving = ServingChat(built, settings)
        state.sessions = await anyio.to_thread.run_sync(ServingSessions, state.serving.engine, settings)
        try:
            yield
        finally:
            if state.sessions is not None:
                state.sessions.close()
            if state.serving is not None:
                state.serving.close()
                if close_engine:
                    state.serving.engine.close()

    # /docs and /redoc load their scripts and styles from the package (fastapi-offline), not a CDN:
    # they work with no network.
    app = FastAPIOffline(
        title="llm-tts", version=__version__, description=DESCRIPTION, lifespan=lifespan, static_url=DOCS_ASSETS_PATH
    )
    state.metrics = ServiceMetrics(lambda: _live_state(state))
    app.state.tts = state
    install_error_handlers(app)
    install_log_record_request_id()
    # Added innermost first. Outermost: the request id (every answer carries it), metrics (every
    # chat completion counts, refused ones too), auth before anything reads the body, the size limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    api_key = settings.api_key_value()
    if api_key is not None:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(router)
    app.include_router(session_router)  # /sessions and the session-scoped OpenAI routes
    app.include_router(viewer_router)  # /ui/: the trace viewer page
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    return app


def _live_state(state: ServiceState) -> LiveState | None:
    """What /metrics reads when scraped (None before the engine is attached)."""
    serving = state.serving
    if serving is None:
        return None
    engine_stats = getattr(serving.engine.backend, "engine_stats", None)  # vLLM's scheduler statistics
    return LiveState(serving.slots.active, serving.slots.queued, engine_stats if callable(engine_stats) else None)


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents a 422 on every route; this API answers bad input with 400 instead."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operation in (op for path in spec.get("paths", {}).values() for op in path.values()):
            operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema
