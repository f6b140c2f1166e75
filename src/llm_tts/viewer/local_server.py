"""``llm-tts view``'s server: the viewer page and a set of loaded traces, on loopback only.

It needs no model and no service extra (the standard library's HTTP server). Routes: ``/ui/`` (the
page), ``/ui/viewer.js`` and ``/ui/viewer.css``, ``/ui/api/runs`` (one summary per trace: label,
correct) and ``/ui/api/runs/{i}`` (trace ``i``). A request whose Host header is not this server's
loopback address is refused, so a web page on another site cannot read the traces through a DNS
name that points at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm_tts.viewer.page import ASSET_TYPES, PAGE_HEADERS, asset_bytes, page_html

LOOPBACK = "127.0.0.1"
LABEL_CHARACTERS = 80


# Labels an eval row or a session export adds to its trace that tell runs apart, and how each is shown.
DETAIL_LABELS = {
    "question_id": "{}",
    "configuration": "{}",
    "seed": "seed {}",
    "index": "record {}",
    "reward": "reward {}",
}


def run_summary(trace: Mapping[str, Any]) -> dict[str, Any]:
    """What the runs list shows of a trace: a label (the question), what tells it apart from other
    runs (question id, configuration, seed), whether it was right, its answer."""
    labels = trace.get("labels") or {}
    nodes = trace.get("nodes") or []
    prompt = next((n.get("text") for n in nodes if n.get("kind") == "prompt"), None)
    label = labels.get("question") or prompt or labels.get("question_id") or labels.get("file") or ""
    label = " ".join(str(label).split())
    correct = labels.get("correct")
    return {
        "label": label[:LABEL_CHARACTERS],
        "detail": " · ".join(
            shown.format(labels[k]) for k, shown in DETAIL_LABELS.items() if labels.get(k) not in (None, "")
        ),
        "correct": correct if isinstance(correct, bool) else None,
        "answer": (trace.get("run") or {}).get("answer"),
        "strategy": (trace.get("run") or {}).get("strategy"),
    }


class TraceViewerServer(ThreadingHTTPServer):
    """Serves the page and ``traces`` (trace JSON objects) at http://127.0.0.1:<port>/ui/."""

    daemon_threads = True

    def __init__(self, traces: Sequence[Mapping[str, Any]], source: str, port: int = 0) -> None:
        self.traces = list(traces)
        self.source = source
        self.page = page_html("files").encode()
        super().__init__((LOOPBACK, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}/ui/"

    def allowed_hosts(self) -> set[str]:
        port = self.server_address[1]
        return {f"{LOOPBACK}:{port}", f"localhost:{port}"}

    def start_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread (stop with :meth:`shutdown`); the thread."""
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="llm-tts-view", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: TraceViewerServer
    server_version = "llm-tts-view"
    sys_version = ""

    def do_GET(self) -> None:
        if self.headers.get("Host", "") not in self.server.allowed_hosts():
            self._send(HTTPStatus.FORBIDDEN, b"unknown host\n", "text/plain; charset=utf-8")
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/ui"):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/ui/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/ui/":
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path.startswith("/ui/") and path[4:] in ASSET_TYPES:
            self._send(HTTPStatus.OK, asset_bytes(path[4:]), ASSET_TYPES[path[4:]])
        elif path == "/ui/api/runs":
            runs = [run_summary(t) for t in self.server.traces]
            self._json({"source": self.server.source, "runs": runs})
        elif path.startswith("/ui/api/runs/") and path[13:].isdigit() and int(path[13:]) < len(self.server.traces):
            self._json(self.server.traces[int(path[13:])])
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _json(self, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in PAGE_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a local viewer has nothing to log per request."""
