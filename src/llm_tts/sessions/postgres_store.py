"""A session store several service replicas share: PostgreSQL, through a connection pool.

Same logical schema and behaviour as :mod:`llm_tts.sessions.sqlite_store`. Every write is one
transaction, committed before the response is sent, so a replica that dies loses nothing it
answered. Replicas race safely on one session: a record takes its index by incrementing the
session's ``num_records`` under that row's lock (the primary key on (session, index) backs it),
and session creation counts live sessions under a transaction-scoped advisory lock, so the
``max_sessions`` cap holds across replicas.

The schema is migrated when a store opens (under an advisory lock: one replica migrates, the
others wait and find it done); ``llm_tts_schema_version`` holds how many migrations ran.
Needs the ``postgres`` extra (psycopg 3 and psycopg-pool).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from llm_tts.errors import (
    BackendUnavailableError,
    SessionFullError,
    SessionLimitError,
    SessionNotFoundError,
    SessionStoreUnavailableError,
)
from llm_tts.sessions.records import SessionInfo, SessionRecord
from llm_tts.sessions.store import SessionStore, check_rewarded

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("llm_tts.sessions")

# Migrations, in order, each a tuple of statements; never edit one that shipped.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: sessions and their records, with the trainer's reward per record
        """CREATE TABLE llm_tts_sessions (
            id TEXT PRIMARY KEY,
            last_used_at DOUBLE PRECISION NOT NULL,
            ttl_s DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            num_records INTEGER NOT NULL DEFAULT 0,
            info TEXT NOT NULL
        )""",
        "CREATE INDEX llm_tts_sessions_expiry ON llm_tts_sessions (expires_at)",
        """CREATE TABLE llm_tts_records (
            session_id TEXT NOT NULL REFERENCES llm_tts_sessions (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            record_id TEXT NOT NULL,
            data TEXT NOT NULL,
            reward DOUBLE PRECISION,
            PRIMARY KEY (session_id, idx)
        )""",
        "CREATE INDEX llm_tts_records_by_id ON llm_tts_records (session_id, record_id)",
    ),
)
# Advisory lock keys (any constant bigint, the same in every replica).
_MIGRATE_LOCK = 0x11_7755_0001
_CREATE_LOCK = 0x11_7755_0002


def redacted(url: str) -> str:
    """The URL with its password (in the authority or a ``password`` parameter) as ``***``: the
    only form of a store URL that goes into a log or an error message."""
    try:
        parts = urlsplit(url)
        if parts.password is None and "password" not in dict(parse_qsl(parts.query)):
            return url
        netloc = parts.netloc
        if parts.password is not None:
            user_info, host = netloc.rsplit("@", 1)
            netloc = f"{user_info.split(':', 1)[0]}:***@{host}"
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))
    except ValueError:
        return f"{url.split(':', 1)[0]}://***"  # not parseable: show nothing of it


class PostgresSessionStore(SessionStore):
    """Sessions in a PostgreSQL database at ``url`` (``postgresql://user@host:port/db``),
    through a pool of at most ``pool_size`` connections."""

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout_s: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError as e:
            raise BackendUnavailableError(
                "the PostgreSQL session store needs psycopg: pip install 'llm-tts[postgres]'"
            ) from e
        self.url = redacted(url)
        self._password = _password_of(url)  # only to scrub it from an error message that quotes it
        self._timeout = connect_timeout_s
        self._errors: tuple[type[Exception], ...] = (psycopg.OperationalError,)
        # A direct connection first, to migrate: its error says why a database is unreachable
        # (the pool's would only say it timed out).
        with self._unavailable_as_typed(), psycopg.connect(url, connect_timeout=max(1, int(connect_timeout_s))) as conn:
            self._migrate(conn)
        self._errors = (psycopg.OperationalError, PoolTimeout)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            name="llm-tts-sessions",
            check=ConnectionPool.check_connection,  # a connection the database dropped (a restart) is replaced
        )
        with self._unavailable_as_typed():
            self._pool.open(wait=True, timeout=connect_timeout_s)
        log.info("session store: PostgreSQL at %s (pool of %d)", self.url, pool_size)

    @contextmanager
    def _unavailable_as_typed(self) -> Iterator[None]:
        try:
            yield
        except self._errors as e:
            reason = _first_line(e).replace(self._password, "***") if self._password else _first_line(e)
            raise SessionStoreUnavailableError(f"session store {self.url}: {reason}") from None

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS llm_tts_schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM llm_tts_schema_version").fetchone()
            version = 0 if row is None else int(row[0])
            if version > len(_MIGRATIONS):  # written by a newer llm-tts: never downgrade it
                raise SessionStoreUnavailableError(
                    f"session store {self.url}: its schema version {version} is newer than this llm-tts "
                    f"knows ({len(_MIGRATIONS)}): upgrade llm-tts"
                )
            for steps in _MIGRATIONS[version:]:
                for statement in steps:
                    conn.execute(statement)  # constant SQL of this module
            if row is None:
                conn.execute("INSERT INTO llm_tts_schema_version VALUES (%s)", (len(_MIGRATIONS),))
            else:
                conn.execute("UPDATE llm_tts_schema_version SET version = %s", (len(_MIGRATIONS),))

    @property
    def schema_version(self) -> int:
        with self._tx() as db:
            row = db.execute("SELECT version FROM llm_tts_schema_version").fetchone()
        return 0 if row is None else int(row[0])

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection: committed at the end, rolled back on error."""
        with self._unavailable_as_typed(), self._pool.connection(timeout=self._timeout) as conn:
            yield conn

    def create(self, info: SessionInfo, *, max_sessions: int, retry_after_s: int = 1) -> SessionInfo:
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))  # the cap holds across replicas
            db.execute("DELETE FROM llm_tts_sessions WHERE expires_at <= %s", (info.created_at,))
            (live,) = db.execute("SELECT COUNT(*) FROM llm_tts_sessions").fetchone() or (0,)
            if live >= max_sessions:
                raise SessionLimitError(max_sessions, retry_after_s)
            db.execute(
                "INSERT INTO llm_tts_sessions (id, last_used_at, ttl_s, expires_at, info) VALUES (%s, %s, %s, %s, %s)",
                (info.id, info.last_used_at, info.ttl_s, info.expires_at, info.model_dump_json()),
            )
        return info

    def get(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "SELECT info, last_used_at, num_records FROM llm_tts_sessions WHERE id = %s AND expires_at > %s",
                (session_id, now),
            ).fetchone()
        return _live(session_id, row)

    def touch(self, session_id: str, *, now: float | None = None) -> SessionInfo:
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "UPDATE llm_tts_sessions SET last_used_at = %(now)s, expires_at = %(now)s + ttl_s "
                "WHERE id = %(id)s AND expires_at > %(now)s RETURNING info, last_used_at, num_records",
                {"now": now, "id": session_id},
            ).fetchone()
        return _live(session_id, row)

    def delete(self, session_id: str) -> bool:
        with self._tx() as db:  # its records go with it (ON DELETE CASCADE)
            return db.execute("DELETE FROM llm_tts_sessions WHERE id = %s", (session_id,)).rowcount > 0

    def add_record(self, record: SessionRecord, *, max_records: int) -> SessionRecord:
        with self._tx() as db:
            # Taking the next index locks the session's row until commit: replicas writing one
            # session queue here, and each gets its own index.
            row = db.execute(
                "UPDATE llm_tts_sessions SET num_records = num_records + 1 "
                "WHERE id = %s AND num_records < %s RETURNING num_records - 1",
                (record.session_id, max_records),
            ).fetchone()
            if row is None:
                if db.execute("SELECT 1 FROM llm_tts_sessions WHERE id = %s", (record.session_id,)).fetchone():
                    raise SessionFullError(record.session_id, max_records)
                raise SessionNotFoundError(record.session_id)
            record = record.model_copy(update={"index": int(row[0])})
            db.execute(
                "INSERT INTO llm_tts_records (session_id, idx, record_id, data, reward) VALUES (%s, %s, %s, %s, %s)",
                (record.session_id, record.index, record.id, record.model_dump_json(exclude={"reward"}), record.reward),
            )
        return record

    def records(self, session_id: str) -> list[SessionRecord]:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM llm_tts_sessions WHERE id = %s", (session_id,)).fetchone() is None:
                raise SessionNotFoundError(session_id)
            rows = db.execute(
                "SELECT data, reward FROM llm_tts_records WHERE session_id = %s ORDER BY idx", (session_id,)
            ).fetchall()
        return [SessionRecord.model_validate_json(data).model_copy(update={"reward": reward}) for data, reward in rows]

    def set_rewards(self, session_id: str, rewards: Mapping[str, float]) -> None:
        with self._tx() as db:
            found = db.execute("SELECT 1 FROM llm_tts_sessions WHERE id = %s FOR UPDATE", (session_id,)).fetchone()
            if found is None:
                raise SessionNotFoundError(session_id)
            rows = db.execute("SELECT record_id, idx FROM llm_tts_records WHERE session_id = %s", (session_id,))
            ids = dict(rows.fetchall())
            check_rewarded(rewards, ids)
            with db.cursor() as cur:
                cur.executemany(
                    "UPDATE llm_tts_records SET reward = %s WHERE session_id = %s AND idx = %s",
                    [(reward, session_id, ids[rid]) for rid, reward in rewards.items()],
                )

    def purge_expired(self, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._tx() as db:
            return db.execute("DELETE FROM llm_tts_sessions WHERE expires_at <= %s", (now,)).rowcount

    def close(self) -> None:
        self._pool.close()


def _live(session_id: str, row: tuple[Any, ...] | None) -> SessionInfo:
    if row is None:
        raise SessionNotFoundError(session_id)
    info, last_used_at, num_records = row
    return SessionInfo.model_validate_json(info).model_copy(
        update={"last_used_at": last_used_at, "num_records": num_records}
    )


def _password_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.password or dict(parse_qsl(parts.query)).get("password")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
