"""``results.jsonl``: append-only, safe against a killed process, read back for resume; each row's
trace (when its run recorded one) goes to ``traces.jsonl`` beside it, so the rows stay small.

Each row is written as one whole line with a single write, then flushed and fsynced, so a row is
either on disk or not. A process killed mid-write can leave a torn last line (no newline):
reading ignores it and the next append cuts it off first, so resuming loses nothing that was
finished and duplicates nothing. A bad line anywhere else is an error (the file was edited).

``traces.jsonl`` holds one line per row that has a trace, written right after the row:
``{"question_id", "configuration", "seed", "correct", "gold", "trace"}``; the row itself keeps
``metadata.trace`` empty. A question run again (a resume, a retry) appends a new line: the last
line of a key is its trace (what :func:`llm_tts.trace.load` returns for the folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llm_tts.errors import DatasetError, LLMTTSError
from llm_tts.evaluation.records import ResultRow, RowKey
from llm_tts.trace.reader import EVAL_TRACES
from llm_tts.validation_errors import typed_validation

RESULTS_FILE = "results.jsonl"
TRACES_FILE = EVAL_TRACES


class ResultsStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RESULTS_FILE
        self.traces_path = self.directory / TRACES_FILE

    def rows(self) -> list[ResultRow]:
        """Every complete row, in file order (a torn last line is left out)."""
        if not self.path.exists():
            return []
        complete = self.path.read_bytes().split(b"\n")[:-1]  # what follows the last newline is torn
        rows = []
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as e:
                raise DatasetError(f"{self.path}: line {number} is not JSON ({e})", param="out") from None
            try:
                with typed_validation(whole="row"):
                    rows.append(ResultRow.model_validate(data))
            except LLMTTSError as e:
                raise DatasetError(f"{self.path}: line {number} is not a result row ({e})", param="out") from None
        return rows

    def latest(self) -> dict[RowKey, ResultRow]:
        """The last row of every key (a failed run retried later is replaced by its retry)."""
        return {row.key: row for row in self.rows()}

    def finished(self) -> dict[RowKey, ResultRow]:
        """Rows that count as done: the latest of each key, if it did not fail."""
        return {key: row for key, row in self.latest().items() if row.error is None}

    def append(self, row: ResultRow) -> None:
        """Append ``row``, then its trace (if it has one) to ``traces.jsonl``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        trace = row.metadata.trace if row.metadata is not None else None
        if row.metadata is not None and trace is not None:
            row = row.model_copy(update={"metadata": row.metadata.model_copy(update={"trace": None})})
        _append_line(self.path, row.model_dump_json())
        if trace is not None:
            labels = {"question_id": row.question_id, "configuration": row.configuration, "seed": row.seed}
            line = {**labels, "correct": row.correct, "gold": row.gold, "trace": trace.to_json()}
            _append_line(self.traces_path, json.dumps(line))

    def rewrite(self, rows: list[ResultRow]) -> None:
        """Replace the file with ``rows`` (a re-scored copy), atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join((row.model_dump_json() + "\n").encode("utf-8") for row in rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _cut_torn_tail(path: Path) -> None:
    """Drop the bytes after the last newline: a write a killed process left half done."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)


def _append_line(path: Path, line: str) -> None:
    """One whole line in one write, flushed and fsynced, after cutting a torn tail."""
    _cut_torn_tail(path)
    with open(path, "ab") as f:
        f.write((line + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
