"""Request and response bodies of the session routes (``/sessions``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class SessionDetail(SessionObject):
    """``GET /sessions/{id}``: the session and its records."""

    records: list[SessionRecord]


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
