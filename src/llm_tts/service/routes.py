"""The HTTP routes: a module-level router that parses requests and hands them to the app's
:class:`~llm_tts.service.serving.ServingChat` (found on ``app.state.tts``): chat completions,
text completions (``/v1/completions``), models, health and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from llm_tts.service.completion_protocol import Completion, CompletionRequest
from llm_tts.service.metrics import ServiceMetrics
from llm_tts.service.protocol import ChatCompletion, ChatCompletionRequest, ErrorResponse, Health, ModelList
from llm_tts.service.run_recording import RunRecorder
from llm_tts.service.serving import CompletionStream, ServingChat
from llm_tts.service.session_serving import ServingSessions
from llm_tts.service.settings import ServiceSettings
from llm_tts.service.streaming import SSE_HEADERS, SSE_MEDIA_TYPE


@dataclass
class ServiceState:
    """What one app owns (``app.state.tts``): its settings and, once started, its serving object."""

    settings: ServiceSettings
    serving: ServingChat | None = None
    sessions: ServingSessions | None = None  # set at startup, with the serving object
    metrics: ServiceMetrics | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "bad input: the message names the field",
        401: "missing or invalid API key",
        404: "unknown model",
        408: "the run exceeded its deadline",
        413: "request body too large",
        429: "the wait queue is full (see Retry-After)",
    }.items()
}

router = APIRouter()


def serving_of(request: Request) -> ServingChat:
    serving = request.app.state.tts.serving
    assert serving is not None, "the engine is attached at startup"
    return serving


@router.get("/health", response_model=Health, tags=["service"])
async def health(request: Request) -> Health:
    return serving_of(request).health()


@router.get("/metrics", response_class=PlainTextResponse, tags=["service"], responses={401: ERROR_RESPONSES[401]})
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format (the API key applies, when set)."""
    registry = request.app.state.tts.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", response_model=ModelList, tags=["openai"], responses={401: ERROR_RESPONSES[401]})
async def list_models(request: Request) -> ModelList:
    return serving_of(request).models()


@router.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"], responses=ERROR_RESPONSES)
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Any:
    """A chat completion chosen by test-time scaling; every TTS field is in the body schema."""
    return await _complete(request, body)


@router.post(
    "/v1/{strategy}/chat/completions", response_model=ChatCompletion, tags=["openai"], responses=ERROR_RESPONSES
)
async def strategy_chat_completions(request: Request, strategy: str, body: ChatCompletionRequest) -> Any:
    """Same as /v1/chat/completions with ``tts_strategy`` taken from the path."""
    return await _complete(request, body, tts_strategy=strategy)


@router.post(
    "/v1/{strategy}/{scorer}/chat/completions",
    response_model=ChatCompletion,
    tags=["openai"],
    responses=ERROR_RESPONSES,
)
async def strategy_scorer_chat_completions(
    request: Request, strategy: str, scorer: str, body: ChatCompletionRequest
) -> Any:
    """Same as /v1/chat/completions with ``tts_strategy`` and ``tts_scorer`` taken from the path."""
    return await _complete(request, body, tts_strategy=strategy, tts_scorer=scorer)


@router.post("/v1/completions", response_model=Completion, tags=["openai"], responses=ERROR_RESPONSES)
async def completions(request: Request, body: CompletionRequest) -> Any:
    """A text completion of one prompt (text or token ids, used as it is: no chat template), chosen
    by test-time scaling; every TTS field is in the body schema."""
    return await answer_text(request, body)


async def _complete(request: Request, body: ChatCompletionRequest, **path_fields: str) -> Response:
    return await answer_chat(request, body, path_fields)


async def answer_chat(
    request: Request,
    body: ChatCompletionRequest,
    path_fields: Mapping[str, str] | None = None,
    recorder: RunRecorder | None = None,
) -> Response:
    """The HTTP answer to a chat completion request: JSON, or an SSE stream. Every chat route
    (top-level and session-scoped) answers through here; ``recorder`` records the run."""
    answer = await serving_of(request).create_chat_completion(
        body, path_fields=path_fields, client_gone=lambda: wait_for_disconnect(request), recorder=recorder
    )
    return _response(answer)


async def answer_text(request: Request, body: CompletionRequest, recorder: RunRecorder | None = None) -> Response:
    """The HTTP answer to a text completion request (top-level and session-scoped), as :func:`answer_chat`."""
    answer = await serving_of(request).create_completion(
        body, client_gone=lambda: wait_for_disconnect(request), recorder=recorder
    )
    return _response(answer)


def _response(answer: ChatCompletion | Completion | CompletionStream[Any]) -> Response:
    if isinstance(answer, CompletionStream):
        return _ClosingStreamingResponse(answer)
    return JSONResponse(answer.model_dump(mode="json"))


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its stream however the response ends, even before the first chunk was pulled
    (the run started before the response did, and holds a slot until stopped)."""

    def __init__(self, stream: CompletionStream[Any]) -> None:
        super().__init__(stream, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.close()
