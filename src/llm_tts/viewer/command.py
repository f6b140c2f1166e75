"""``llm-tts view PATH``: open a trace file, an eval folder or a session export in the browser,
served from loopback with no model loaded."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from pathlib import Path
from typing import Any

from llm_tts.errors import LLMTTSError
from llm_tts.viewer.local_server import TraceViewerServer


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a trace JSON file, an llm-tts eval folder or a session export")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the address instead of opening a browser")


def load_trace_json(path: str | Path) -> list[dict[str, Any]]:
    """The traces found at ``path`` as JSON objects (each with its ``labels``), in their order."""
    from llm_tts.trace import load

    return [trace.to_json() for trace in load(path)]


def run_view(args: argparse.Namespace) -> int:
    try:
        traces = load_trace_json(args.path)
    except (LLMTTSError, OSError, ValueError) as e:  # ValueError: a line that is not JSON, a trace that is not valid
        print(f"llm-tts view: {e}", file=sys.stderr)
        return 2
    if not traces:
        print(f"llm-tts view: no trace in {args.path}", file=sys.stderr)
        return 2
    try:
        server = TraceViewerServer(traces, source=str(args.path), port=args.port)
    except OSError as e:
        print(f"llm-tts view: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 2
    print(f"{len(traces)} trace(s) from {args.path} at {server.url} (Ctrl-C stops)", file=sys.stderr)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
