"""Opening the session store a server's settings name: ``memory``, ``sqlite`` (the embedded
default, at ``--session-db``), a file path or ``sqlite:///path``, or a ``postgresql://`` URL that
several replicas share."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from llm_tts.errors import InvalidParameterError
from llm_tts.sessions.sqlite_store import SQLiteSessionStore, default_store_path
from llm_tts.sessions.store import MemorySessionStore, SessionStore

StoreKind = Literal["memory", "sqlite", "postgresql"]
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def store_kind(spec: str) -> StoreKind:
    """Which store ``spec`` names; InvalidParameterError (param ``session_store``) for a URL
    of another database. The value in the error has its password hidden."""
    if spec in ("memory", "sqlite"):
        return spec  # type: ignore[return-value]
    if spec.startswith(POSTGRES_SCHEMES):
        return "postgresql"
    if spec.strip() and spec != "sqlite://" and (spec.startswith("sqlite://") or "://" not in spec):
        return "sqlite"
    from llm_tts.sessions.postgres_store import redacted

    raise InvalidParameterError(
        "session_store", redacted(spec), "memory, sqlite, a file path, sqlite:///path or a postgresql:// URL"
    )


def open_store(spec: str, path: str | Path | None = None, *, pool_size: int = 10) -> SessionStore:
    """The store ``spec`` names (see :func:`store_kind`). ``path`` is the SQLite file when
    ``spec`` is just "sqlite" (default: :func:`default_store_path`); ``pool_size`` bounds a
    PostgreSQL store's connections."""
    kind = store_kind(spec)
    if kind == "memory":
        return MemorySessionStore()
    if kind == "postgresql":
        from llm_tts.sessions.postgres_store import PostgresSessionStore  # psycopg only when asked for

        return PostgresSessionStore(spec, pool_size=pool_size)
    if spec == "sqlite":
        return SQLiteSessionStore(path or default_store_path())
    return SQLiteSessionStore(spec.removeprefix("sqlite://"))
