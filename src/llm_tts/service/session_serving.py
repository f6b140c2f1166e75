"""Sessions without the web framework: create, read, delete, record runs and build samples.

A session-scoped request is served by :class:`~llm_tts.service.serving.ServingChat` like any
other; :meth:`ServingSessions.prepare` (a chat) and :meth:`ServingSessions.prepare_text` (a text
completion) only check the session first (live, room for a record), apply a chat's token
continuation, and hand back the hook that records the finished run. A text completion's record
has no messages: its prompt ids are the ones given, or its text's tokens, and a later prompt that
starts with a turn's exact tokens continues it.
Store calls are blocking (SQLite, or PostgreSQL through a pool), so they run in worker threads.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import Any

from llm_tts.engine import PartialRun, TTSEngine, TTSResult
from llm_tts.errors import InvalidParameterError, SessionFullError
from llm_tts.service.completion_protocol import Completion, CompletionRequest
from llm_tts.service.protocol import ChatCompletion, ChatCompletionRequest
from llm_tts.service.session_protocol import (
    CreateSessionRequest,
    RecordReward,
    RewardList,
    RewardsRequest,
    SampleList,
    SamplesRequest,
    SessionDeleted,
    SessionDetail,
    SessionObject,
    TurnNode,
    TurnReward,
)
from llm_tts.service.settings import ServiceSettings
from llm_tts.sessions.factory import open_store
from llm_tts.sessions.records import (
    SessionInfo,
    SessionOptions,
    SessionRecord,
    StopReason,
    aborted_record_of,
    record_of,
)
from llm_tts.sessions.samples import build_samples, conversation_tree
from llm_tts.sessions.store import SessionStore
from llm_tts.sessions.turns import align_turn, extends_messages


class ServingSessions:
    """The sessions of one server: its store, its limits and the engine's tokenizer."""

    def __init__(self, engine: TTSEngine, settings: ServiceSettings, store: SessionStore | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.store = store or open_store(
            settings.session_store, settings.session_db, pool_size=settings.session_pool_size
        )
        self.end_of_turn_ids = sorted(getattr(engine.backend, "eos_token_ids", ()) or ())

    async def create(self, request: CreateSessionRequest | None) -> SessionObject:
        options = SessionOptions.model_validate((request or CreateSessionRequest()).model_dump())
        now = time.time()
        info = SessionInfo(
            id=f"sess-{uuid.uuid4().hex}",
            created_at=now,
            last_used_at=now,
            ttl_s=options.ttl_s or self.settings.session_ttl_s,
            options=options,
            end_of_turn_ids=self.end_of_turn_ids,
        )
        create = partial(
            self.store.create, info, max_sessions=self.settings.max_sessions, retry_after_s=self.settings.retry_after_s
        )
        return SessionObject.of(await asyncio.to_thread(create))

    async def get(self, session_id: str) -> SessionDetail:
        def read() -> SessionDetail:
            info = self.store.get(session_id)
            head = SessionObject.of(info).model_dump()
            records = self.store.records(session_id)
            tree = conversation_tree(records, info.end_of_turn_ids)
            nodes = [
                TurnNode(
                    record_id=r.id,
                    index=r.index,
                    parent_id=None if parent is None else records[parent].id,
                    children=[records[c].id for c in children],
                )
                for r, parent, children in zip(records, tree.parent, tree.children)
            ]
            return SessionDetail(**head, records=records, tree=nodes)

        return await asyncio.to_thread(read)

    async def info(self, session_id: str) -> SessionInfo:
        """The live session (404 when unknown, deleted or expired)."""
        return await asyncio.to_thread(self.store.get, session_id)

    async def delete(self, session_id: str) -> SessionDeleted:
        await self.info(session_id)  # 404 for an unknown or expired one
        await asyncio.to_thread(self.store.delete, session_id)
        return SessionDeleted(id=session_id)

    async def samples(self, session_id: str, request: SamplesRequest | None) -> SampleList:
        def build() -> SampleList:
            info = self.store.get(session_id)
            records = self.store.records(session_id)
            if not records:
                raise InvalidParameterError(
                    "session_id", session_id, "the session has no records yet: send chat completions to its base_url"
                )
            return SampleList(session_id=session_id, data=build_samples(records, info.end_of_turn_ids, request))

        return await asyncio.to_thread(build)

    async def set_rewards(self, session_id: str, request: RewardsRequest) -> RewardList:
        def apply() -> RewardList:
            self.store.get(session_id)  # 404 for an unknown or expired session
            records = self.store.records(session_id)
            chosen = [_rewarded(records, i, item) for i, item in enumerate(request.rewards)]
            self.store.set_rewards(session_id, {record.id: reward for record, reward in chosen})
            data = [
                RecordReward(record_id=r.id, index=r.index, completion_id=r.completion_id, reward=reward)
                for r, reward in chosen
            ]
            return RewardList(session_id=session_id, data=data)

        return await asyncio.to_thread(apply)

    async def prepare(self, session_id: str, body: ChatCompletionRequest) -> tuple[ChatCompletionRequest, SessionRun]:
        """Check the session before anything runs; the request to serve and its recorder."""
        info = await self._open(session_id)
        request = body.model_dump(mode="json", exclude_unset=True)
        messages = [m.model_dump(mode="json", exclude_none=True) for m in body.messages]
        continued_from = None
        if info.options.token_continuation and body.prompt_token_ids is None:
            body, continued_from = await asyncio.to_thread(self._continue, session_id, body, messages)
        return body, SessionRun(self, session_id, request, messages, continued_from, time.time())

    async def prepare_text(self, session_id: str, body: CompletionRequest) -> SessionRun:
        """Check the session before a text completion runs; the recorder of its run."""
        await self._open(session_id)
        return SessionRun(self, session_id, body.model_dump(mode="json", exclude_unset=True), [], None, time.time())

    async def _open(self, session_id: str) -> SessionInfo:
        """The live session, touched (404 when gone), with room for one more record (413 when full)."""
        info = await asyncio.to_thread(self.store.touch, session_id)
        if info.num_records >= self.settings.max_session_records:
            raise SessionFullError(session_id, self.settings.max_session_records)
        return info

    def _continue(
        self, session_id: str, body: ChatCompletionRequest, messages: list[dict[str, Any]]
    ) -> tuple[ChatCompletionRequest, str | None]:
        """The request with its prompt as the previous turn's exact tokens plus the new ones."""
        records = self.store.records(session_id)
        prev = next((r for r in reversed(records) if extends_messages(r.messages, r.answer_text, messages)), None)
        if prev is None:
            return body, None  # a new conversation: rendered as usual
        rendered = self.engine.backend.render_chat(body.to_messages())
        aligned = align_turn(prev.prompt_token_ids, prev.chosen.token_ids, rendered, self.end_of_turn_ids)
        if aligned is None:
            return body, None
        ids = [*prev.prompt_token_ids, *prev.chosen.token_ids, *aligned.between]
        return body.model_copy(update={"prompt_token_ids": ids}), prev.id

    def add(self, record: SessionRecord) -> None:
        self.store.add_record(record, max_records=self.settings.max_session_records)

    def close(self) -> None:
        self.store.close()


class SessionRun:
    """One session request's run, recorded however it ends (a :class:`RunRecorder`)."""

    def __init__(
        self,
        sessions: ServingSessions,
        session_id: str,
        request: dict[str, Any],
        messages: list[dict[str, Any]],
        continued_from: str | None,
        started: float,
    ) -> None:
        self.sessions, self.session_id, self.request, self.messages = sessions, session_id, request, messages
        self.continued_from, self.started = continued_from, started

    def answered(self, result: TTSResult, completion: ChatCompletion | Completion) -> None:
        response = completion.model_dump(mode="json")
        record = record_of(
            self.session_id,
            self.request,
            self.messages,
            result,
            response,
            started=self.started,
            continued_from=self.continued_from,
        )
        self.sessions.add(record)

    def unanswered(self, partial: PartialRun | None, stop_reason: StopReason, error: str) -> None:
        record = aborted_record_of(
            self.session_id,
            self.request,
            self.messages,
            partial,
            stop_reason=stop_reason,
            error=error,
            started=self.started,
            continued_from=self.continued_from,
        )
        self.sessions.add(record)


def _rewarded(records: list[SessionRecord], i: int, item: TurnReward) -> tuple[SessionRecord, float]:
    """The record ``item`` names (a 400 naming the field when there is none)."""
    value: str | int | None
    if item.completion_id is not None:
        found = next((r for r in records if r.completion_id == item.completion_id), None)
        field, value = "completion_id", item.completion_id
    elif item.record_id is not None:
        found = next((r for r in records if r.id == item.record_id), None)
        field, value = "record_id", item.record_id
    else:
        found = records[item.index] if item.index is not None and item.index < len(records) else None
        field, value = "index", item.index
    if found is None:
        raise InvalidParameterError(f"rewards[{i}].{field}", value, f"no turn of this session has that {field}")
    return found, item.reward
