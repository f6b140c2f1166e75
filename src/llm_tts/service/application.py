"""The FastAPI app: OpenAI-compatible chat completions over one TTS engine."""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llm_tts import __version__
from llm_tts.engine import TTSEngine, TTSResult
from llm_tts.errors import InvalidParameterError, ModelNotFoundError
from llm_tts.models import EMBEDDED_ALIASES, EMBEDDED_MODEL_NAME
from llm_tts.progress import RunControl
from llm_tts.service.auth import APIKeyMiddleware
from llm_tts.service.errors import install_error_handlers
from llm_tts.service.limits import BodyLimitMiddleware, RunSlots, apply_limits
from llm_tts.service.runner import EngineRunner
from llm_tts.service.schemas import (
    REQUEST_FIELDS,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    ResponseMessage,
)
from llm_tts.service.settings import ServiceSettings
from llm_tts.service.streaming import ChunkWriter, stream_response

DESCRIPTION = """Test-time scaling of LLM reasoning behind OpenAI's chat completions API.

Send the TTS fields (`tts_strategy`, `num_paths`, `tts_scorer`, ...) in the request body (what the
OpenAI SDK's `extra_body` sends), or use the path form `/v1/{strategy}/chat/completions` and
`/v1/{strategy}/{scorer}/chat/completions`. Each choice carries `tts_metadata`. With
`stream=true` the search's progress arrives as chunks with `choices[0].tts_progress`."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "bad input: the message names the field",
        401: "missing or invalid API key",
        404: "unknown model",
        408: "the run exceeded its deadline",
        413: "request body too large",
        429: "too many concurrent requests (see Retry-After)",
    }.items()
}


class _State:
    """Everything one app instance owns; nothing is shared between apps or requests."""

    def __init__(self, settings: ServiceSettings, engine: TTSEngine | None, close_engine: bool) -> None:
        self.settings = settings
        self.close_engine = close_engine
        self.slots = RunSlots(settings.max_concurrency, settings.retry_after_s)
        self.runner: EngineRunner | None = None
        self.started = int(time.time())
        if engine is not None:
            self.attach(engine)

    def attach(self, engine: TTSEngine) -> None:
        self.runner = EngineRunner(engine, self.slots)

    @property
    def engine(self) -> TTSEngine:
        assert self.runner is not None, "the engine is attached at startup"
        return self.runner.engine

    def served_names(self) -> set[str]:
        name = self.engine.backend.model_name
        names = {name.lower()}
        if name == EMBEDDED_MODEL_NAME:
            names |= {a for a in EMBEDDED_ALIASES if a}
        return names


def create_app(
    engine: TTSEngine | None = None,
    settings: ServiceSettings | None = None,
    *,
    close_engine: bool | None = None,
) -> FastAPI:
    """The ASGI app. Without ``engine`` one is built at startup from ``settings`` (and closed at
    shutdown); a given engine is left open unless ``close_engine`` is True."""
    settings = settings or ServiceSettings.from_env()
    state = _State(settings, engine, close_engine if close_engine is not None else engine is None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.runner is None:
            built = await anyio.to_thread.run_sync(
                lambda: TTSEngine.create(
                    settings.model, settings.backend, prm_model=settings.prm_model, **settings.backend_options()
                )
            )
            state.attach(built)
        try:
            yield
        finally:
            if state.runner is not None:
                state.runner.shutdown()
                if state.close_engine:
                    state.engine.close()

    app = FastAPI(title="llm-tts", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.tts = state
    install_error_handlers(app, REQUEST_FIELDS)
    # Outermost first: auth before anything reads the body, then the size limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key_value())

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        backend = state.engine.backend
        return Health(model=backend.model_name, backend=backend.name, active_requests=state.slots.active,
                      max_concurrency=state.slots.limit)

    @app.get("/v1/models", response_model=ModelList, tags=["openai"], responses={401: _ERRORS[401]})
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=state.engine.backend.model_name, created=state.started)])

    responses = dict(_ERRORS)

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"], responses=responses)
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Any:
        """A chat completion chosen by test-time scaling; every TTS field is in the body schema."""
        return await _complete(state, request, body)

    @app.post("/v1/{strategy}/chat/completions", response_model=ChatCompletion, tags=["openai"], responses=responses)
    async def strategy_chat_completions(request: Request, strategy: str, body: ChatCompletionRequest) -> Any:
        """Same as /v1/chat/completions with ``tts_strategy`` taken from the path."""
        return await _complete(state, request, body, tts_strategy=strategy)

    @app.post(
        "/v1/{strategy}/{scorer}/chat/completions", response_model=ChatCompletion, tags=["openai"], responses=responses
    )
    async def strategy_scorer_chat_completions(request: Request, strategy: str, scorer: str, body: ChatCompletionRequest) -> Any:
        """Same as /v1/chat/completions with ``tts_strategy`` and ``tts_scorer`` taken from the path."""
        return await _complete(state, request, body, tts_strategy=strategy, tts_scorer=scorer)

    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    return app


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


async def _complete(state: _State, request: Request, body: ChatCompletionRequest, **path_fields: str) -> Any:
    settings = state.settings
    _check_model(state, body.model)
    _check_provider(state, body.provider)
    config = apply_limits(body.to_config(**_path_overrides(body, path_fields)), settings)
    messages = body.to_messages()
    deadline_s = min(body.tts_deadline or settings.deadline_s, settings.deadline_s)
    runner = state.runner
    assert runner is not None
    slot = state.slots.acquire()  # 429 when full
    control = RunControl.with_timeout(deadline_s)
    completion_id, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), state.engine.backend.model_name
    if body.stream:
        try:
            # Bad input must be a 4xx before the 200 of a stream is sent.
            await runner.validate(messages, config)
        except BaseException:
            slot.release()
            raise
        writer = ChunkWriter(completion_id, created, model)
        return stream_response(request, runner, slot, messages, config, control, deadline_s, writer)
    future = runner.start(slot, messages, config, control)
    result = await runner.result(request, future, control, deadline_s)
    return JSONResponse(_completion(result, completion_id, created, model).model_dump(mode="json"))


def _completion(result: TTSResult, completion_id: str, created: int, model: str) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[Choice(message=ResponseMessage(content=result.text), finish_reason=result.finish_reason,
                        tts_metadata=result.metadata)],
        usage=result.metadata.usage,
    )


def _path_overrides(body: ChatCompletionRequest, path_fields: dict[str, str]) -> dict[str, str]:
    """Path segments win only when the body does not say something different."""
    for name, value in path_fields.items():
        given = getattr(body, name) if name in body.model_fields_set else None
        if given is not None and given != value:
            raise InvalidParameterError(name, given, f"conflicts with {value!r} in the URL path; send one or the other")
    return path_fields


def _check_model(state: _State, model: str | None) -> None:
    if model is None or model.strip().lower() in state.served_names():
        return
    served = state.engine.backend.model_name
    raise ModelNotFoundError(
        f"model {model!r} is not served here; this server serves {served!r} (GET /v1/models)", param="model"
    )


def _check_provider(state: _State, provider: str | None) -> None:
    backend = state.engine.backend.name
    if provider is None or provider in ("auto", backend) or (backend == "openai" and provider == "openrouter"):
        return
    raise InvalidParameterError("provider", provider, f"this server runs the {backend!r} backend; send 'auto' or {backend!r}")

