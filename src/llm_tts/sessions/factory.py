"""Opening the session store a server's settings name."""

from __future__ import annotations

from pathlib import Path

from llm_tts.sessions.sqlite_store import SQLiteSessionStore, default_store_path
from llm_tts.sessions.store import MemorySessionStore, SessionStore


def open_store(kind: str, path: str | Path | None = None) -> SessionStore:
    """ "memory", or "sqlite" at ``path`` (default: :func:`default_store_path`)."""
    if kind == "memory":
        return MemorySessionStore()
    return SQLiteSessionStore(path or default_store_path())
