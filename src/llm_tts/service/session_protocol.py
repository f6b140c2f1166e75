"""Request and response bodies of the session routes (``/sessions``)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_tts.sessions.records import SessionInfo, SessionOptions, SessionRecord
from llm_tts.sessions.samples import Sample, SampleOptions


class CreateSessionRequest(SessionOptions):
    """``POST /sessions``: every field is optional."""

    model_config = ConfigDict(extra="forbid")


class SessionObject(BaseModel):
    id: str
    object: Literal["session"] = "session"
    base_path: str = Field(description="append it to the server URL for the session's base_url: /sessions/{id}")
    created_at: float
    last_used_at: float
    expires_at: float = Field(description="when it expires unless used again (Unix seconds)")
    options: SessionOptions
    num_records: int

    @classmethod
    def of(cls, info: SessionInfo) -> SessionObject:
        return cls(
            id=info.id,
            base_path=f"/sessions/{info.id}",
            created_at=info.created_at,
            last_used_at=info.last_used_at,
            expires_at=info.expires_at,
            options=info.options,
            num_records=info.num_records,
        )


class TurnNode(BaseModel):
    """One record's place in the session's tree of turns."""

    record_id: str
    index: int
    parent_id: str | None = Field(description="the turn this record continues; None: it starts a conversation")
    children: list[str] = Field(description="the turns that continue it (more than one: a branch)")


class SessionDetail(SessionObject):
    """``GET /sessions/{id}``: the session, its records and their tree (the turn each continues)."""

    records: list[SessionRecord]
    tree: list[TurnNode] = Field(description="per record, in record order")


class SessionDeleted(BaseModel):
    id: str
    object: Literal["session.deleted"] = "session.deleted"
    deleted: bool = True


class SamplesRequest(SampleOptions):
    """``POST /sessions/{id}/samples``: every field is optional."""

    model_config = ConfigDict(extra="forbid")


class SampleList(BaseModel):
    object: Literal["list"] = "list"
    session_id: str
    data: list[Sample]


Reward = Annotated[float, Field(strict=True, allow_inf_nan=False, description="a finite number")]


class TurnReward(BaseModel):
    """One turn's reward, naming the turn by exactly one of its completion's ``id`` (from the chat
    response), its record's ``id``, or its record's ``index`` in the session."""

    model_config = ConfigDict(extra="forbid")

    completion_id: str | None = Field(None, description="the chat completion's id (chatcmpl-...)")
    record_id: str | None = Field(None, description="the record's id (GET /sessions/{id})")
    index: int | None = Field(None, ge=0, description="the record's index in the session")
    reward: Reward

    @model_validator(mode="after")
    def _one_name(self) -> Self:
        named = [n for n in (self.completion_id, self.record_id, self.index) if n is not None]
        if len(named) != 1:
            raise ValueError("name the turn by exactly one of completion_id, record_id or index")
        return self


class RewardsRequest(BaseModel):
    """``POST /sessions/{id}/rewards``: rewards set (or replaced) all at once, or none when one is bad."""

    model_config = ConfigDict(extra="forbid")

    rewards: list[TurnReward] = Field(min_length=1)


class RecordReward(BaseModel):
    record_id: str
    index: int
    completion_id: str | None
    reward: float


class RewardList(BaseModel):
    object: Literal["session.rewards"] = "session.rewards"
    session_id: str
    data: list[RecordReward] = Field(description="the records rewarded by this request")
