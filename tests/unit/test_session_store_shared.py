"""The session store several replicas share (fast tier, a real PostgreSQL server): two stores on
one database racing on one session's records and on the sessions cap, the store chosen by URL,
and a store URL's password kept out of errors, logs and the settings' repr."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_tts.cli import main
from llm_tts.errors import InvalidParameterError, SessionFullError, SessionLimitError, SessionStoreUnavailableError
from llm_tts.service import ServiceSettings
from llm_tts.sessions import SessionInfo, SessionOptions, SessionRecord, open_store
from llm_tts.sessions.postgres_store import PostgresSessionStore
from llm_tts.sessions.records import CandidateRecord, SegmentRecord
from llm_tts.sessions.sqlite_store import SQLiteSessionStore
from llm_tts.sessions.store import MemorySessionStore

NOW = 1e12


def info(sid: str) -> SessionInfo:
    return SessionInfo(
        id=sid, created_at=NOW, last_used_at=NOW, ttl_s=3600, options=SessionOptions(), end_of_turn_ids=[2]
    )


def record(sid: str, n: int) -> SessionRecord:
    segment = SegmentRecord(token_ids=[n], logprobs=[-0.5])
    return SessionRecord(
        id=f"rec-{n}",
        session_id=sid,
        created_at=NOW,
        finished_at=NOW,
        status="completed",
        request={},
        messages=[{"role": "user", "content": str(n)}],
        prompt_token_ids=[1],
        strategy="self_consistency",
        scorer="entropy",
        candidates=[CandidateRecord(index=0, segments=[segment], status="selected")],
        selected=0,
    )


@pytest.fixture
def two_replicas(postgres_server):
    """Two stores (as two replicas hold them) on one fresh database."""
    url = postgres_server.new_database()
    first, second = PostgresSessionStore(url, pool_size=4), PostgresSessionStore(url, pool_size=4)
    yield first, second
    first.close()
    second.close()


def test_two_replicas_writing_one_session_get_distinct_indexes_and_the_cap_holds(two_replicas):
    first, second = two_replicas
    first.create(info("s"), max_sessions=10)

    def add(n: int) -> int | str:
        try:
            return (first if n % 2 else second).add_record(record("s", n), max_records=30).index
        except SessionFullError:
            return "full"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(add, range(40)))
    indexes = sorted(o for o in outcomes if isinstance(o, int))
    assert indexes == list(range(30)) and outcomes.count("full") == 10
    stored = second.records("s")
    assert [r.index for r in stored] == list(range(30)) and first.get("s", now=NOW).num_records == 30
    # each index holds the record that was given it
    assert {r.id for r in stored} <= {f"rec-{n}" for n in range(40)} and len({r.id for r in stored}) == 30


def test_the_sessions_cap_holds_across_replicas(two_replicas):
    first, second = two_replicas

    def create(n: int) -> str:
        try:
            (first if n % 2 else second).create(info(f"s{n}"), max_sessions=5)
            return "created"
        except SessionLimitError:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(12)))
    assert outcomes.count("created") == 5 and outcomes.count("refused") == 7


def test_the_store_is_chosen_by_its_spec(tmp_path, postgres_server):
    assert isinstance(open_store("memory"), MemorySessionStore)
    by_url = open_store(f"sqlite://{tmp_path}/a.sqlite3")
    by_path = open_store(str(tmp_path / "b.sqlite3"))
    assert isinstance(by_url, SQLiteSessionStore) and by_url.path == tmp_path / "a.sqlite3"
    assert isinstance(by_path, SQLiteSessionStore) and by_path.path == tmp_path / "b.sqlite3"
    shared = open_store(postgres_server.new_database(), pool_size=2)
    assert isinstance(shared, PostgresSessionStore) and shared.schema_version == 1
    for store in (by_url, by_path, shared):
        store.close()
    with pytest.raises(InvalidParameterError, match="flag --session-store or env LLM_TTS_SESSION_STORE") as bad:
        ServiceSettings.build(session_store="mysql://agent:hunter2@db/sessions")
    assert "hunter2" not in str(bad.value) and "agent:***@db" in str(bad.value)


def test_a_store_urls_password_never_reaches_errors_logs_or_the_settings_repr(postgres_server, caplog):
    caplog.set_level(logging.DEBUG)
    # the server trusts loopback, so any password gets in: it must not be shown anywhere
    url = postgres_server.database_url("postgres").replace("llm_tts@", "llm_tts:hunter2@")
    store = PostgresSessionStore(url, pool_size=1)
    assert store.url.startswith("postgresql://llm_tts:***@127.0.0.1:")
    store.close()
    closed_port = url.replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(SessionStoreUnavailableError) as down:
        PostgresSessionStore(closed_port, connect_timeout_s=2)
    assert "hunter2" not in str(down.value) and "llm_tts:***@127.0.0.1:1/" in str(down.value)
    assert down.value.http_status == 503
    settings = ServiceSettings(session_store=url)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert caplog.records and not any("hunter2" in r.getMessage() for r in caplog.records)


def test_sessions_export_reads_a_postgresql_store(postgres_server, tmp_path):
    url = postgres_server.new_database()
    store = PostgresSessionStore(url, pool_size=1)
    store.create(info("s"), max_sessions=5)
    store.add_record(record("s", 7), max_records=5)
    store.close()
    out = tmp_path / "samples.jsonl"
    assert main(["sessions", "export", "s", "--out", str(out), "--session-store", url]) == 0
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["metadata"]["record_ids"] == ["rec-7"]


def test_a_database_of_a_newer_schema_is_refused_not_downgraded(postgres_server):
    import psycopg

    url = postgres_server.new_database()
    PostgresSessionStore(url, pool_size=1).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE llm_tts_schema_version SET version = 99")
    with pytest.raises(SessionStoreUnavailableError, match="schema version 99 is newer"):
        PostgresSessionStore(url, pool_size=1)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM llm_tts_schema_version").fetchone() == (99,)
