"""``llm-tts view``'s loopback server without a browser: what it serves, what it refuses (another
Host, a path outside the page), and the headers that keep the page to its own script."""

from __future__ import annotations

import httpx
import pytest

from llm_tts.viewer.local_server import TraceViewerServer, run_summary

TRACE = {
    "schema": "llm_tts.trace",
    "version": 1,
    "run": {"strategy": "beam_search", "started_at": "2026-12-04T07:00:00Z", "selected": "n1", "answer": "5"},
    "nodes": [
        {"id": "n0", "parent": None, "kind": "prompt", "text": "What is\n2 + 3?"},
        {"id": "n1", "parent": "n0", "kind": "step", "step": 1, "text": "5", "status": "selected"},
    ],
    "labels": {"question_id": "a", "correct": True},
}


@pytest.fixture
def viewer_url():
    server = TraceViewerServer([TRACE], source="traces.json")
    server.start_in_thread()
    yield server.url
    server.shutdown()
    server.server_close()


def test_serves_the_page_its_assets_and_the_traces_on_loopback(viewer_url):
    assert viewer_url.startswith("http://127.0.0.1:") and viewer_url.endswith("/ui/")
    with httpx.Client(base_url=viewer_url, timeout=10) as c:
        page = c.get("")
        assert page.status_code == 200 and 'data-mode="files"' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
        assert page.headers["x-content-type-options"] == "nosniff"
        for asset, kind in (("viewer.js", "text/javascript"), ("viewer.css", "text/css")):
            got = c.get(asset)
            assert got.status_code == 200 and got.headers["content-type"].startswith(kind) and got.content
        runs = c.get("api/runs").json()
        assert runs == {
            "source": "traces.json",
            "runs": [
                {"label": "What is 2 + 3?", "detail": "a", "correct": True, "answer": "5", "strategy": "beam_search"}
            ],
        }
        assert c.get("api/runs/0").json() == TRACE
        for missing in ("api/runs/1", "api/runs/-1", "../pyproject.toml", "static/index.html", "api/runs/0/x"):
            assert c.get(missing).status_code == 404, missing


def test_refuses_a_request_addressed_to_another_host(viewer_url):
    # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends its own Host.
    with httpx.Client(base_url=viewer_url, timeout=10) as c:
        assert c.get("api/runs", headers={"Host": "evil.example:80"}).status_code == 403
        assert c.get(
            "api/runs", headers={"Host": viewer_url.split("/")[2].replace("127.0.0.1", "localhost")}
        ).is_success


def test_a_run_is_labelled_by_its_question():
    assert run_summary({**TRACE, "labels": {"question": "  Two\tplus three "}})["label"] == "Two plus three"
    assert run_summary({**TRACE, "labels": {"correct": "yes"}})["correct"] is None  # only a real verdict counts
    session_record = {"session_id": "s1", "record_id": "r7", "index": 2, "status": "ok", "reward": 1.0}
    assert run_summary({**TRACE, "labels": session_record})["detail"] == "record 2 · reward 1.0"
