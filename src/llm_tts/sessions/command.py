"""``llm-tts sessions export ID --out FILE``: a session's training samples as JSONL, one a line,
read straight from the store (SQLite by default, or the PostgreSQL one replicas share; no model,
no running server needed)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from llm_tts.errors import InvalidParameterError, LLMTTSError
from llm_tts.sessions.factory import open_store, store_kind
from llm_tts.sessions.records import SessionRecord
from llm_tts.sessions.samples import SampleOptions, build_samples
from llm_tts.sessions.sqlite_store import default_store_path

SESSION_DB_ENV = "LLM_TTS_SESSION_DB"  # the same variables `llm-tts serve` reads
SESSION_STORE_ENV = "LLM_TTS_SESSION_STORE"


def add_sessions_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sessions_command", required=True)
    export = sub.add_parser("export", help="write a session's training samples as JSONL (one sample a line)")
    export.add_argument("session_id", help="the session's id (from POST /sessions)")
    export.add_argument("--out", required=True, type=Path, help="the JSONL file to write")
    export.add_argument(
        "--session-db",
        type=Path,
        default=None,
        help=f"the server's SQLite store (default: ${SESSION_DB_ENV} or {default_store_path()})",
    )
    export.add_argument(
        "--session-store",
        default=None,
        help=f"the server's store, as llm-tts serve takes it, e.g. a postgresql:// URL (default: ${SESSION_STORE_ENV} "
        "or sqlite, the --session-db file)",
    )
    export.add_argument(
        "--candidates",
        choices=("all", "selected"),
        default="all",
        help="all: one sample per candidate of a search (default); selected: the selected answers only",
    )
    export.add_argument("--reward", type=float, default=None, help="reward of every sample (default: its score)")
    export.add_argument(
        "--no-merge-turns", action="store_true", help="one sample per request instead of one per conversation"
    )
    export.add_argument(
        "--traces",
        action="store_true",
        help="write the records' traces instead of samples: one line per record that has one (llm_tts.trace.load "
        "reads the file)",
    )


def run_sessions(args: argparse.Namespace) -> int:
    spec = args.session_store or os.environ.get(SESSION_STORE_ENV) or "sqlite"
    path = args.session_db or os.environ.get(SESSION_DB_ENV) or default_store_path()
    try:
        kind = store_kind(spec)
        if kind == "memory":
            raise InvalidParameterError("session_store", spec, "a memory store is gone with its server")
        file = Path(path) if spec == "sqlite" else Path(spec.removeprefix("sqlite://"))
        if kind == "sqlite" and not file.is_file():  # reading must not create an empty store
            print(f"llm-tts sessions: no session store at {file} (pass --session-db)", file=sys.stderr)
            return 2
        store = open_store(spec, path)
    except LLMTTSError as e:
        print(f"llm-tts sessions: {e}", file=sys.stderr)
        return 2
    options = SampleOptions(candidates=args.candidates, reward=args.reward, merge_turns=not args.no_merge_turns)
    try:
        info = store.get(args.session_id)
        records = store.records(args.session_id)
        lines = (
            [json.dumps(trace_line(r)) for r in records if r.trace is not None]
            if args.traces
            else [s.model_dump_json() for s in build_samples(records, info.end_of_turn_ids, options)]
        )
    except LLMTTSError as e:
        print(f"llm-tts sessions: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    what = "traces" if args.traces else "samples"
    print(f"wrote {len(lines)} {what} of session {args.session_id} to {args.out}")
    return 0


def trace_line(record: SessionRecord) -> dict[str, Any]:
    """One line of a traces export: the record's trace, labelled with where it came from."""
    labels = {"session_id": record.session_id, "record_id": record.id, "index": record.index}
    return {**labels, "status": record.status, "reward": record.reward, "trace": record.trace}
