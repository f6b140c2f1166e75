"""Several service replicas on one PostgreSQL session store (a real server, tests/postgres_server.py):
the official openai client alternating between two replicas across a multi-turn session with a
branch gets the same records, tree and samples as from one process on SQLite; and a replica killed
(SIGKILL, a real ``llm-tts serve`` process) between turns loses nothing it answered: another
replica continues the session from the store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from llm_tts.backends.openai_backend import OpenAIBackend
from llm_tts.engine import TTSEngine
from llm_tts.service import ServiceSettings, create_app

MODEL = "SmolLM2-135M-Instruct"
TURN = {"max_tokens": 6, "temperature": 0.0, "num_paths": 1, "return_token_ids": True}
QUESTION = {"role": "user", "content": "What is 6 * 7? Use the calculator."}
MORE = {"role": "user", "content": "And 6 * 8?"}


def tool(content: str) -> dict:
    return {"role": "tool", "tool_call_id": "call_1", "content": content}


def ask(url: str, session_id: str, messages: list[dict]) -> tuple[str, str]:
    """One turn through the official client on ``url``'s session base URL: (completion id, answer)."""
    client = openai.OpenAI(base_url=f"{url}/sessions/{session_id}/v1", api_key="unused", max_retries=0, timeout=300)
    out = client.chat.completions.create(model=MODEL, messages=messages, logprobs=True, extra_body=TURN)
    client.close()
    return out.id, out.choices[0].message.content or ""


def agent_with_a_retry(urls: list[str]) -> tuple[str, list[str]]:
    """Four turns, the i-th sent to ``urls[i % len(urls)]``: a question, a tool result, a retry
    of that turn with another tool result (a branch from turn 1), and a follow-up on the first
    branch. Returns the session id and the completion ids in order."""
    sid = httpx.post(f"{urls[0]}/sessions", json={}, timeout=30).json()["id"]
    first, answer1 = ask(urls[0], sid, [QUESTION])
    history = [QUESTION, {"role": "assistant", "content": answer1}]
    second, answer2 = ask(urls[1 % len(urls)], sid, [*history, tool("calculator: 42")])
    retry, _ = ask(urls[2 % len(urls)], sid, [*history, tool("calculator: error, try again")])
    follow_up = [*history, tool("calculator: 42"), {"role": "assistant", "content": answer2}, MORE]
    last, _ = ask(urls[3 % len(urls)], sid, follow_up)
    return sid, [first, second, retry, last]


def as_turns(url: str, session_id: str, completion_ids: list[str]) -> tuple[list, list]:
    """The session's tree and samples with record ids replaced by their turn's number, so two
    runs of the same conversation compare equal."""
    detail = httpx.get(f"{url}/sessions/{session_id}", timeout=30).json()
    turn_of = {r["id"]: completion_ids.index(r["response"]["id"]) for r in detail["records"]}
    tree = [(turn_of[n["record_id"]], n["parent_id"] and turn_of[n["parent_id"]]) for n in detail["tree"]]
    samples = httpx.post(f"{url}/sessions/{session_id}/samples", json={}, timeout=60).json()["data"]
    kept = []
    for s in samples:
        meta = s["metadata"]
        kept.append(
            (
                s["tokens"],
                s["loss_mask"],
                s["rollout_log_probs"],
                [turn_of[r] for r in meta["record_ids"]],
                turn_of[meta["group"]],
                meta["branched"],
            )
        )
    return tree, kept


@pytest.fixture(scope="module")
def replicas(serve_app, hf_backend, postgres_server):
    """Two apps, each with its own engine and its own connection pool, on one PostgreSQL database."""
    url = postgres_server.new_database()
    return [serve_app(create_app(TTSEngine(hf_backend), ServiceSettings(session_store=url))) for _ in range(2)]


def test_alternating_replicas_give_the_same_session_as_one_process(replicas, serve_app, hf_backend, tmp_path):
    sid, ids = agent_with_a_retry(replicas)
    tree, samples = as_turns(replicas[1], sid, ids)
    assert tree == [(0, None), (1, 0), (2, 0), (3, 1)]  # the retry branched from turn 1
    assert len(samples) == 2 and samples[0][3] == [0, 2] and samples[1][3] == [0, 1, 3]
    assert as_turns(replicas[0], sid, ids) == (tree, samples)  # both replicas read the same store

    one = serve_app(create_app(TTSEngine(hf_backend), ServiceSettings(session_db=str(tmp_path / "s.sqlite3"))))
    single_sid, single_ids = agent_with_a_retry([one])
    assert as_turns(one, single_sid, single_ids) == (tree, samples)


def start_replica(store_url: str, model_url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``llm-tts serve`` in a child process on a free port, its generation delegated to the
    model server at ``model_url`` (the openai backend: no model loads in the child)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LLM_TTS_SESSION_STORE": store_url, "OPENAI_BASE_URL": model_url, "OPENAI_API_KEY": "unused"}
    cmd = [sys.executable, "-m", "llm_tts.cli", "serve", "--backend", "openai", "--model", MODEL, "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url, give_up = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > give_up:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"llm-tts serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def test_a_replica_killed_mid_session_loses_nothing_it_answered(serve_app, service_url, postgres_server, tmp_path):
    store, model_url = postgres_server.new_database(), f"{service_url}/v1"
    doomed, doomed_url = start_replica(store, model_url, tmp_path / "replica.log")
    try:
        sid = httpx.post(f"{doomed_url}/sessions", json={}, timeout=30).json()["id"]
        first, answer1 = ask(doomed_url, sid, [QUESTION])
        history = [QUESTION, {"role": "assistant", "content": answer1}, tool("calculator: 42")]
        second, answer2 = ask(doomed_url, sid, history)
    finally:
        doomed.send_signal(signal.SIGKILL)  # no shutdown: only what was committed survives
        doomed.wait()

    backend = OpenAIBackend(base_url=model_url, api_key="unused")
    survivor = serve_app(create_app(TTSEngine(backend), ServiceSettings(session_store=store)))
    third, _ = ask(survivor, sid, [*history, {"role": "assistant", "content": answer2}, MORE])
    detail = httpx.get(f"{survivor}/sessions/{sid}", timeout=30).json()
    records = detail["records"]
    assert [(r["index"], r["response"]["id"]) for r in records] == [(0, first), (1, second), (2, third)]
    assert all(r["status"] != "aborted" for r in records)
    assert records[1]["messages"] == history and records[2]["messages"][-1] == MORE
    backend.close()
