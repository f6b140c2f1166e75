"""Where sessions and their records live: the :class:`SessionStore` interface and an in-memory
store. :mod:`llm_tts.sessions.sqlite_store` is the default, durable one;
:mod:`llm_tts.sessions.postgres_store` is the one several service replicas share.

Stores are thread-safe. Caps are checked atomically with the write they guard, so concurrent
requests cannot overshoot them. Expired sessions are treated as absent and removed by
:meth:`SessionStore.purge_expired`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping

from llm_tts.errors import InvalidParameterError, SessionFullError, SessionLimitError, SessionNotFoundError
from llm_tts.sessions.records import SessionInfo, SessionRecord


class SessionStore(ABC):
    """Sessions and their records. Every method may be called from any thread."""

    @abstractmethod
    def create(self, info: SessionInfo, *, max_sessions: int, retry_after_s: int = 1) -> SessionInfo:
        """Store a new session; SessionLimitError when ``max_sessions`` live ones exist."""

    @abstractmethod
    def get(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        """The live session; SessionNotFoundError when unknown, deleted or expired."""

    @abstractmethod
    def touch(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        """Mark the session used now (its TTL counts from here); the session as stored."""

    @abstractmethod
    def delete(self, session_id: str) -> bool:
        """Remove the session and its records; False when there was none."""

    @abstractmethod
    def add_record(self, record: SessionRecord, *, max_records: int) -> SessionRecord:
        """Append a record (its ``index`` is set here); SessionFullError at ``max_records``."""

    @abstractmethod
    def records(self, session_id: str) -> list[SessionRecord]:
        """The session's records in the order they were added (live or not: an export may read
        a session that expired a moment ago, until it is purged)."""

    @abstractmethod
    def set_rewards(self, session_id: str, rewards: Mapping[str, float]) -> None:
        """Set the reward of records by id, all or none; SessionNotFoundError for an unknown
        session, InvalidParameterError (param ``rewards``) for a record not in it."""

    @abstractmethod
    def purge_expired(self, *, now: float | None = None) -> int:
        """Remove expired sessions and their records; how many were removed."""

    def close(self) -> None:  # noqa: B027 (optional for stores without resources)
        """Release the store's resources."""


class MemorySessionStore(SessionStore):
    """Everything in this process's memory: fast, and lost with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionInfo] = {}
        self._records: dict[str, list[SessionRecord]] = {}

    def create(self, info: SessionInfo, *, max_sessions: int, retry_after_s: int = 1) -> SessionInfo:
        with self._lock:
            self._purge(info.created_at)
            if len(self._sessions) >= max_sessions:
                raise SessionLimitError(max_sessions, retry_after_s)
            self._sessions[info.id] = info
            self._records[info.id] = []
            return info

    def get(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        with self._lock:
            return self._live(session_id, time.time() if now is None else now)

    def touch(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        now = time.time() if now is None else now
        with self._lock:
            info = self._live(session_id, now).model_copy(update={"last_used_at": now})
            self._sessions[session_id] = info
            return info

    def _live(self, session_id: str, now: float) -> SessionInfo:
        info = self._sessions.get(session_id)
        if info is None or info.expired(now):
            raise SessionNotFoundError(session_id)
        return info.model_copy(update={"num_records": len(self._records[session_id])})

    def delete(self, session_id: str) -> bool:
        with self._lock:
            self._records.pop(session_id, None)
            return self._sessions.pop(session_id, None) is not None

    def add_record(self, record: SessionRecord, *, max_records: int) -> SessionRecord:
        with self._lock:
            records = self._records.get(record.session_id)
            if records is None:
                raise SessionNotFoundError(record.session_id)
            if len(records) >= max_records:
                raise SessionFullError(record.session_id, max_records)
            record = record.model_copy(update={"index": len(records)})
            records.append(record)
            return record

    def records(self, session_id: str) -> list[SessionRecord]:
        with self._lock:
            if session_id not in self._records:
                raise SessionNotFoundError(session_id)
            return list(self._records[session_id])

    def set_rewards(self, session_id: str, rewards: Mapping[str, float]) -> None:
        with self._lock:
            records = self._records.get(session_id)
            if records is None:
                raise SessionNotFoundError(session_id)
            check_rewarded(rewards, {r.id for r in records})
            self._records[session_id] = [
                r.model_copy(update={"reward": rewards[r.id]}) if r.id in rewards else r for r in records
            ]

    def purge_expired(self, *, now: float | None = None) -> int:
        with self._lock:
            return self._purge(time.time() if now is None else now)

    def _purge(self, now: float) -> int:
        gone = [sid for sid, info in self._sessions.items() if info.expired(now)]
        for sid in gone:
            del self._sessions[sid]
            self._records.pop(sid, None)
        return len(gone)


def check_rewarded(rewards: Mapping[str, float], record_ids: Collection[str]) -> None:
    """Every rewarded record is one of the session's (checked before anything is written)."""
    unknown = sorted(set(rewards) - set(record_ids))
    if unknown:
        raise InvalidParameterError("rewards", unknown[0], "no record of this session has that id")
