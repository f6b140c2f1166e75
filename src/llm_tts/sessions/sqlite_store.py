"""The default session store: one embedded SQLite file in WAL mode.

Every record is committed before its response is sent, so a crash or restart of the service
loses nothing that a client was answered for; WAL lets readers (an export, GET /sessions/{id})
work while requests write. Several processes may open the same file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from llm_tts.errors import SessionFullError, SessionLimitError, SessionNotFoundError
from llm_tts.sessions.records import SessionInfo, SessionRecord
from llm_tts.sessions.store import SessionStore, check_rewarded

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    last_used_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    info TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS records (
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);
"""


# Migrations, in order: the schema version (PRAGMA user_version) is how many have been applied.
# A file written by an older version is brought up to date when opened; never edit one that shipped.
_MIGRATIONS = (
    "ALTER TABLE records ADD COLUMN reward REAL",  # 1: the trainer's reward per record
)


def default_store_path() -> Path:
    """``$XDG_STATE_HOME/llm-tts/sessions.sqlite3`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "llm-tts" / "sessions.sqlite3"


class SQLiteSessionStore(SessionStore):
    """Sessions in one SQLite file (created with its folder on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:  # one process migrates; the others then see the new version
            (version,) = db.execute("PRAGMA user_version").fetchone()
            for step in _MIGRATIONS[version:]:
                db.execute(step)
            db.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, info: SessionInfo, *, max_sessions: int, retry_after_s: int = 1) -> SessionInfo:
        with self._tx() as db:
            _purge(db, info.created_at)
            (live,) = db.execute("SELECT COUNT(*) FROM sessions").fetchone()
            if live >= max_sessions:
                raise SessionLimitError(max_sessions, retry_after_s)
            db.execute(
                "INSERT INTO sessions (id, last_used_at, expires_at, info) VALUES (?, ?, ?, ?)",
                (info.id, info.last_used_at, info.expires_at, info.model_dump_json()),
            )
        return info

    def _live(self, db: sqlite3.Connection, session_id: str, now: float) -> SessionInfo:
        row = db.execute("SELECT info, expires_at FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None or row[1] <= now:
            raise SessionNotFoundError(session_id)
        (count,) = db.execute("SELECT COUNT(*) FROM records WHERE session_id = ?", (session_id,)).fetchone()
        return SessionInfo.model_validate_json(row[0]).model_copy(update={"num_records": count})

    def get(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        with self._lock:
            return self._live(self._db, session_id, time.time() if now is None else now)

    def touch(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        now = time.time() if now is None else now
        with self._tx() as db:
            info = self._live(db, session_id, now).model_copy(update={"last_used_at": now})
            db.execute(
                "UPDATE sessions SET last_used_at = ?, expires_at = ?, info = ? WHERE id = ?",
                (now, info.expires_at, info.model_copy(update={"num_records": 0}).model_dump_json(), session_id),
            )
        return info

    def delete(self, session_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM records WHERE session_id = ?", (session_id,))
            return db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def add_record(self, record: SessionRecord, *, max_records: int) -> SessionRecord:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (record.session_id,)).fetchone() is None:
                raise SessionNotFoundError(record.session_id)
            (count,) = db.execute("SELECT COUNT(*) FROM records WHERE session_id = ?", (record.session_id,)).fetchone()
            if count >= max_records:
                raise SessionFullError(record.session_id, max_records)
            record = record.model_copy(update={"index": count})
            db.execute(
                "INSERT INTO records (session_id, idx, data, reward) VALUES (?, ?, ?, ?)",
                (record.session_id, count, record.model_dump_json(exclude={"reward"}), record.reward),
            )
        return record

    def records(self, session_id: str) -> list[SessionRecord]:
        with self._lock:
            if self._db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise SessionNotFoundError(session_id)
            rows = self._db.execute(
                "SELECT data, reward FROM records WHERE session_id = ? ORDER BY idx", (session_id,)
            ).fetchall()
        return [SessionRecord.model_validate_json(data).model_copy(update={"reward": reward}) for data, reward in rows]

    def set_rewards(self, session_id: str, rewards: Mapping[str, float]) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise SessionNotFoundError(session_id)
            rows = db.execute("SELECT json_extract(data, '$.id'), idx FROM records WHERE session_id = ?", (session_id,))
            ids = dict(rows.fetchall())
            check_rewarded(rewards, ids)
            db.executemany(
                "UPDATE records SET reward = ? WHERE session_id = ? AND idx = ?",
                [(reward, session_id, ids[rid]) for rid, reward in rewards.items()],
            )

    def purge_expired(self, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._tx() as db:
            return _purge(db, now)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _purge(db: sqlite3.Connection, now: float) -> int:
    db.execute("DELETE FROM records WHERE session_id IN (SELECT id FROM sessions WHERE expires_at <= ?)", (now,))
    return int(db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount)
