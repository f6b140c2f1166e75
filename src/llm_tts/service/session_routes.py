"""The session routes: create, read, delete a session, its samples, and its scoped OpenAI routes.

``{server}/sessions/{id}`` is a base URL: under it ``/v1/chat/completions`` (and the path forms
``/v1/{strategy}/...``), ``/v1/completions`` and ``/v1/models`` answer exactly like the top-level
routes (the same code serves them, see :func:`llm_tts.service.routes.answer_chat` and
:func:`~llm_tts.service.routes.answer_text`), and every completion is recorded in the session.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_tts.service.completion_protocol import Completion, CompletionRequest
from llm_tts.service.protocol import ChatCompletion, ChatCompletionRequest, ModelList
from llm_tts.service.routes import ERROR_RESPONSES, answer_chat, answer_text, serving_of
from llm_tts.service.session_protocol import (
    CreateSessionRequest,
    RewardList,
    RewardsRequest,
    SampleList,
    SamplesRequest,
    SessionDeleted,
    SessionDetail,
    SessionObject,
)
from llm_tts.service.session_serving import ServingSessions

router = APIRouter(tags=["sessions"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: ERROR_RESPONSES[code] for code in (400, 401, 404, 413, 429)}


def sessions_of(request: Request) -> ServingSessions:
    sessions = request.app.state.tts.sessions
    assert sessions is not None, "sessions are attached at startup"
    return sessions


@router.post("/sessions", response_model=SessionObject, responses=_ERRORS)
async def create_session(request: Request, body: CreateSessionRequest | None = None) -> SessionObject:
    """A new session; its base URL for OpenAI clients is ``{server}/sessions/{id}``."""
    return await sessions_of(request).create(body)


@router.get("/sessions/{session_id}", response_model=SessionDetail, responses=_ERRORS)
async def get_session(request: Request, session_id: str) -> SessionDetail:
    """The session and its records (requests, responses and their token-level truth)."""
    return await sessions_of(request).get(session_id)


@router.delete("/sessions/{session_id}", response_model=SessionDeleted, responses=_ERRORS)
async def delete_session(request: Request, session_id: str) -> SessionDeleted:
    """End the session and drop its records; later use is 404."""
    return await sessions_of(request).delete(session_id)


@router.post("/sessions/{session_id}/samples", response_model=SampleList, responses=_ERRORS)
async def session_samples(request: Request, session_id: str, body: SamplesRequest | None = None) -> SampleList:
    """Training samples from the session's records (tokens, loss_mask, rollout_log_probs, ...)."""
    return await sessions_of(request).samples(session_id, body)


@router.post("/sessions/{session_id}/rewards", response_model=RewardList, responses=_ERRORS)
async def session_rewards(request: Request, session_id: str, body: RewardsRequest) -> RewardList:
    """Set turns' rewards, each named by its completion's id, its record's id or its index."""
    return await sessions_of(request).set_rewards(session_id, body)


@router.get("/sessions/{session_id}/v1/models", response_model=ModelList, responses=_ERRORS)
async def session_models(request: Request, session_id: str) -> ModelList:
    await sessions_of(request).info(session_id)
    return serving_of(request).models()


@router.post("/sessions/{session_id}/v1/chat/completions", response_model=ChatCompletion, responses=ERROR_RESPONSES)
async def session_chat_completions(request: Request, session_id: str, body: ChatCompletionRequest) -> Any:
    """/v1/chat/completions, recorded in the session."""
    return await _complete_in_session(request, session_id, body)


@router.post(
    "/sessions/{session_id}/v1/{strategy}/chat/completions", response_model=ChatCompletion, responses=ERROR_RESPONSES
)
async def session_strategy_chat_completions(
    request: Request, session_id: str, strategy: str, body: ChatCompletionRequest
) -> Any:
    return await _complete_in_session(request, session_id, body, tts_strategy=strategy)


@router.post(
    "/sessions/{session_id}/v1/{strategy}/{scorer}/chat/completions",
    response_model=ChatCompletion,
    responses=ERROR_RESPONSES,
)
async def session_strategy_scorer_chat_completions(
    request: Request, session_id: str, strategy: str, scorer: str, body: ChatCompletionRequest
) -> Any:
    return await _complete_in_session(request, session_id, body, tts_strategy=strategy, tts_scorer=scorer)


@router.post("/sessions/{session_id}/v1/completions", response_model=Completion, responses=ERROR_RESPONSES)
async def session_completions(request: Request, session_id: str, body: CompletionRequest) -> Any:
    """/v1/completions, recorded in the session."""
    recorder = await sessions_of(request).prepare_text(session_id, body)
    return await answer_text(request, body, recorder=recorder)


async def _complete_in_session(
    request: Request, session_id: str, body: ChatCompletionRequest, **path_fields: str
) -> Response:
    body, recorder = await sessions_of(request).prepare(session_id, body)
    return await answer_chat(request, body, path_fields, recorder=recorder)
