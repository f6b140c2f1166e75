"""Reading traces back: ``load(path)`` for a trace file, an ``llm-tts eval`` folder or a session export.

Every trace comes back as a :class:`~llm_tts.trace.model.Trace` with ``labels`` saying where it
came from (the file, and for an eval row its question id, configuration and whether it was right).
A trace of a version this reader does not know is refused, not half read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm_tts.errors import InvalidParameterError
from llm_tts.trace.model import SCHEMA_NAME, SCHEMA_VERSION, Trace

EVAL_TRACES = "traces.jsonl"  # an eval folder's traces, one row per line beside its rows file


def parse(data: Any, labels: dict[str, Any] | None = None) -> Trace:
    """One trace from its JSON data (as written), with ``labels`` added."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        raise InvalidParameterError("trace", _short(data), f"is not an {SCHEMA_NAME} trace (no 'schema' key naming it)")
    if data.get("version") != SCHEMA_VERSION:
        raise InvalidParameterError(
            "trace", f"version {data.get('version')!r}", f"this reader knows version {SCHEMA_VERSION}"
        )
    trace = Trace.model_validate(data)
    trace.labels = {**trace.labels, **(labels or {})}
    return trace


def load(path: str | Path) -> list[Trace]:
    """Every trace at ``path``: a trace JSON file, a JSONL file of traces (or of rows carrying one under
    ``trace``), an ``llm-tts eval`` folder (its ``traces.jsonl``), or a session: the export of
    ``llm-tts sessions export ID --traces`` or the JSON of ``GET /sessions/{id}`` (its records'
    traces, labelled with the record's id and reward)."""
    p = Path(path)
    if p.is_dir():
        if not (p / EVAL_TRACES).is_file():
            raise InvalidParameterError(
                "path", str(p), f"is a folder without {EVAL_TRACES} (an eval folder with traces)"
            )
        return _latest_per_run(_rows(p / EVAL_TRACES))
    if not p.is_file():
        raise InvalidParameterError("path", str(p), "does not exist")
    text = p.read_text()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return list(_rows(p))  # JSONL
    if isinstance(whole, list):
        return [t for i, item in enumerate(whole) for t in _found(item, {"file": str(p), "index": i})]
    return list(_found(whole, {"file": str(p)}))


def _latest_per_run(traces: Iterator[Trace]) -> list[Trace]:
    """An eval folder's traces, the last of each (question, configuration, seed): a run done again
    (a resume, a retry) replaces the earlier one, as its row does."""
    latest: dict[tuple[Any, ...], Trace] = {}
    for t in traces:
        key = (t.labels.get("question_id"), t.labels.get("configuration"), t.labels.get("seed"))
        latest.pop(key, None)  # re-inserted: the file's order of last appearance
        latest[key] = t
    return list(latest.values())


def _rows(path: Path) -> Iterator[Trace]:
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                yield from _found(json.loads(line), {"file": str(path), "line": line_no})


def _found(item: Any, where: dict[str, Any]) -> Iterator[Trace]:
    """The trace an item is, or carries under ``trace`` (with the item's other small keys as labels)."""
    if isinstance(item, dict) and item.get("schema") == SCHEMA_NAME:
        yield parse(item, where)
    elif isinstance(item, dict) and isinstance(item.get("records"), list):  # a session (GET /sessions/{id})
        for record in item["records"]:
            if isinstance(record, dict) and isinstance(record.get("trace"), dict):
                labels = {"session_id": item.get("id"), "record_id": record.get("id"), "index": record.get("index")}
                yield parse(record["trace"], {**where, **labels, "reward": record.get("reward")})
    elif isinstance(item, dict) and isinstance(item.get("trace"), dict):
        labels = {k: v for k, v in item.items() if k != "trace" and isinstance(v, (str, int, float, bool, type(None)))}
        yield parse(item["trace"], {**where, **labels})


def _short(data: Any) -> str:
    text = json.dumps(data)[:80] if not isinstance(data, str) else data[:80]
    return text
