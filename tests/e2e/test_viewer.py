"""The trace viewer in a real browser (headless Chromium, tests/browser.py): a live beam search on
the service's /ui/ behind an API key, a saved eval folder opened by ``llm-tts view``'s server, and
model text that tries to run script. Each checks what is drawn against the trace the page received
and that the browser's console has no error; screenshots land in tests/artifacts/."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_tts.viewer.local_server import TraceViewerServer

# One browser per session: every test here runs on the same xdist worker.
pytestmark = pytest.mark.xdist_group("browser")

SRC = Path(__file__).resolve().parents[2] / "src"
API_KEY = "viewer-test-key"
QUESTIONS = [
    {"id": "a", "question": "What is 2 + 3?", "answer": "5"},
    {"id": "b", "question": "What is 4 * 2?", "answer": "8"},
]
SPY_ON_COMPLETIONS = """
window.__sse = [];
const original = window.fetch;
window.fetch = async (...args) => {
  const response = await original(...args);
  if (String(args[0]).includes("/chat/completions")) response.clone().text().then((t) => window.__sse.push(t));
  return response;
};
// What the page draws, in order: each progress row, then the tree.
window.__drawn = [];
new MutationObserver(() => window.__drawn.push("progress")).observe(document.getElementById("progress"), { childList: true });
new MutationObserver(() => window.__drawn.push("tree")).observe(document.getElementById("tree"), { childList: true });
"""


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def sse_chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def selected_path(trace: dict[str, Any]) -> list[str]:
    parents = {n["id"]: n["parent"] for n in trace["nodes"]}
    path, node = [], trace["run"]["selected"]
    while node is not None:
        path.append(node)
        node = parents[node]
    return path


def assert_tree_matches(driver: Any, trace: dict[str, Any]) -> None:
    """The drawn tree is the trace's: every node once with its status, the selected path outlined."""
    items = by_css(driver, "#tree [role=treeitem]")
    drawn = {i.get_attribute("data-node-id"): i.get_attribute("data-status") for i in items}
    assert len(items) == len(drawn) == len(trace["nodes"])
    assert drawn == {n["id"]: "prompt" if n["kind"] == "prompt" else n["status"] for n in trace["nodes"]}
    on_path = {i.get_attribute("data-node-id") for i in by_css(driver, "#tree .on-path")}
    assert on_path == set(selected_path(trace))
    (shown,) = by_css(driver, "#tree [aria-selected=true]")
    assert shown.get_attribute("data-node-id") == trace["run"]["selected"]
    assert len(by_css(driver, "#vote tbody tr")) == len(trace["run"].get("vote") or [])


# -- the service's page: a live beam search -------------------------------------------------------
@pytest.fixture(scope="module")
def keyed_service_url(serve_app, tts_engine):
    """The service on the session's engine with an API key."""
    from llm_tts.service import ServiceSettings, create_app

    return serve_app(create_app(tts_engine, ServiceSettings(api_key=API_KEY)))


def test_ui_page_is_public_with_a_content_security_policy_and_the_api_keeps_its_key(keyed_service_url):
    with httpx.Client(base_url=keyed_service_url, timeout=30) as c:
        page = c.get("/ui/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
        assert c.get("/ui/viewer.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/anything-else").status_code == 404
        assert c.get("/v1/models").status_code == 401
        assert c.get("/ui").headers.get("location") == "/ui/"


def test_live_beam_search_is_drawn_as_its_progress_arrives(browser, keyed_service_url, tmp_path):
    from selenium.webdriver.common.keys import Keys

    driver = browser.driver
    browser.open(keyed_service_url + "/ui/")
    browser.wait(lambda d: not d.find_element("id", "key-row").get_attribute("hidden"), message="no key prompt")
    # The one error the console may show: the key-less /v1/models that told the page to ask for the key.
    assert all("/v1/models" in e["message"] and "401" in e["message"] for e in browser.console_errors())
    driver.find_element("id", "api-key").send_keys(API_KEY)
    fields = driver.find_element("id", "live-fields")
    fields.clear()
    fields.send_keys(
        json.dumps(
            {
                "max_tokens": 24,
                "tts_beam_size": 2,
                "tts_candidates_per_step": 2,
                "tts_max_steps": 2,
                "tts_step_max_tokens": 8,
                "tts_scorer": "entropy",
                "seed": 0,
            }
        )
    )
    assert driver.find_element("id", "live-strategy").get_attribute("value") == "beam_search"
    driver.execute_script(SPY_ON_COMPLETIONS)
    driver.find_element("id", "live-run").send_keys(Keys.ENTER)
    browser.wait(lambda d: d.execute_script("return window.__sse.length") == 1, message="no completion")
    browser.wait(lambda d: d.find_element("id", "live-status").text.startswith("done"), message="run not drawn")
    chunks = sse_chunks(driver.execute_script("return window.__sse[0]"))
    progress = [c["choices"][0]["tts_progress"] for c in chunks if c["choices"] and "tts_progress" in c["choices"][0]]
    (trace,) = [
        c["choices"][0]["tts_metadata"]["trace"] for c in chunks if c["choices"] and "tts_metadata" in c["choices"][0]
    ]
    assert progress and len(by_css(driver, "#progress li")) == len(progress)
    drawn = driver.execute_script("return window.__drawn")
    assert drawn[0] == "progress" and drawn.index("tree") > drawn.index("progress")  # progress first, then the tree
    assert trace["run"]["strategy"] == "beam_search" and len(trace["nodes"]) > 3
    assert_tree_matches(driver, trace)
    assert API_KEY not in driver.current_url
    assert browser.console_errors() == []
    browser.screenshots("viewer-live-beam-search")
    # The same run saved as a chat completion and opened from disk with the page's file picker.
    saved = tmp_path / "completion.json"
    saved.write_text(json.dumps({"choices": [{"tts_metadata": {"trace": trace}}]}))
    driver.find_element("id", "file-input").send_keys(str(saved))
    browser.wait(lambda d: d.find_element("id", "trace-title").text == "completion.json", message="file not drawn")
    assert_tree_matches(driver, trace)
    assert browser.console_errors() == []


# -- llm-tts view on a saved eval folder ----------------------------------------------------------
@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory, tts_engine) -> Path:
    """A saved llm-tts eval of two questions (self-consistency, two short paths), traces included."""
    from llm_tts.evaluation import InProcessSolver, ResultsStore, build_configurations, load_questions, run_evaluation
    from llm_tts.evaluation.progress import EvalProgress

    out = tmp_path_factory.mktemp("viewer-eval")
    data = out / "q.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    configurations = build_configurations(["self_consistency"], [2], common={"max_tokens": 12}, seeds=[0], greedy=False)
    progress = EvalProgress(len(QUESTIONS), stream=io.StringIO(), terminal=False)
    run_evaluation(
        load_questions(data),
        configurations,
        InProcessSolver(tts_engine),
        ResultsStore(out / "run"),
        seeds=[0],
        progress=progress,
    )
    return out / "run"


def test_view_draws_an_eval_folder_with_its_questions(browser, eval_folder):
    from selenium.webdriver.common.keys import Keys

    from llm_tts.viewer.command import load_trace_json

    traces = load_trace_json(eval_folder)
    assert len(traces) == 2
    server = TraceViewerServer(traces, source=str(eval_folder))
    server.start_in_thread()
    try:
        driver = browser.driver
        browser.open(server.url)
        browser.wait(lambda d: len(by_css(d, "#runs [role=option]")) == 2, message="no runs list")
        browser.wait(lambda d: len(by_css(d, "#tree [role=treeitem]")) == len(traces[0]["nodes"]))
        marks = [o.get_attribute("class") for o in by_css(driver, "#runs [role=option]")]
        assert marks == ["correct" if t["labels"].get("correct") else "wrong" for t in traces]
        assert_tree_matches(driver, traces[0])
        # The keyboard: the runs list and the tree take arrow keys; Enter shows a node.
        driver.find_element("id", "runs").send_keys(Keys.ARROW_DOWN)
        browser.wait(lambda d: d.find_element("id", "trace-title").text == server_label(traces[1]))
        assert_tree_matches(driver, traces[1])
        first = driver.find_element("css selector", "#tree [role=treeitem][tabindex='0']")
        first.send_keys(Keys.ARROW_DOWN, Keys.ENTER)
        focused = driver.switch_to.active_element
        assert focused.get_attribute("role") == "treeitem" and focused.get_attribute("aria-level") == "2"
        shown = driver.find_element("css selector", "#node dd").text
        assert shown.startswith(focused.get_attribute("data-node-id") + " ")
        assert browser.console_errors() == []
        browser.screenshots("viewer-eval-folder")
    finally:
        server.shutdown()
        server.server_close()


def server_label(trace: dict[str, Any]) -> str:
    from llm_tts.viewer.local_server import run_summary

    return run_summary(trace)["label"]


# -- model text is hostile ------------------------------------------------------------------------
ATTACK = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def hostile_trace() -> dict[str, Any]:
    """A hand-written trace whose every model-written field tries to run script."""
    code_run = {"code": f"print('{ATTACK}')", "output": ATTACK, "output_bytes": 80, "status": "ok", "elapsed_s": 0.01}
    return {
        "schema": "llm_tts.trace",
        "version": 1,
        "run": {
            "strategy": "self_consistency",
            "started_at": "2026-12-04T07:00:00Z",
            "selected": "n1",
            "answer": ATTACK,
            "vote": [{"answer": ATTACK, "count": 1, "weight": 1.0, "nodes": ["n1"]}],
        },
        "nodes": [
            {"id": "n0", "parent": None, "kind": "prompt", "text": ATTACK},
            {
                "id": "n1",
                "parent": "n0",
                "kind": "candidate",
                "text": f"<think>{ATTACK}</think>{ATTACK}",
                "status": "selected",
                "answer": ATTACK,
                "code_executions": [code_run],
            },
            {"id": "n2", "parent": "n0", "kind": "candidate", "text": ATTACK, "status": "finished"},
        ],
        "events": [{"t": 0.1, "type": "select", "nodes": ["n1"], "detail": {"why": ATTACK}}],
        "labels": {"question": ATTACK, "correct": False},
    }


@pytest.fixture
def view_command(tmp_path):
    """Runs ``llm-tts view PATH --no-browser`` in a child process; returns the page's address."""
    children: list[subprocess.Popen[str]] = []

    def start(path: Path) -> str:
        child = subprocess.Popen(
            [sys.executable, "-m", "llm_tts.cli", "view", str(path), "--no-browser"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        children.append(child)
        assert child.stderr is not None
        line = child.stderr.readline()
        assert " at http://127.0.0.1:" in line, line
        return line.split(" at ", 1)[1].split()[0]

    yield start
    for child in children:
        child.send_signal(signal.SIGINT)  # Ctrl-C: it stops cleanly
        assert child.wait(timeout=30) == 0


def test_model_text_is_drawn_as_text_and_runs_nothing(browser, view_command, tmp_path):
    trace = hostile_trace()
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(trace) + "\n" + json.dumps(trace) + "\n")
    url = view_command(path)
    driver = browser.driver
    browser.open(url)
    browser.wait(lambda d: len(by_css(d, "#tree [role=treeitem]")) == 3, message="trace not drawn")
    assert driver.execute_script("return window.__pwned") is None
    assert by_css(driver, "img") == [] and len(by_css(driver, "script")) == 1  # the viewer's own
    node_panel = driver.find_element("id", "node")
    assert node_panel.find_element("css selector", "pre.output").text == ATTACK
    assert ATTACK in driver.find_element("id", "vote").text
    assert ATTACK[:40] in driver.find_element("id", "runs").text
    assert_tree_matches(driver, trace)
    assert browser.console_errors() == []
