"""``results.jsonl``: append-only, safe against a killed process, read back for resume.

Each row is written as one whole line with a single write, then flushed and fsynced, so a row is
either on disk or not. A process killed mid-write can leave a torn last line (no newline):
reading ignores it and the next append cuts it off first, so resuming loses nothing that was
finished and duplicates nothing. A bad line anywhere else is an error (the file was edited).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llm_tts.errors import DatasetError, LLMTTSError
from llm_tts.evaluation.records import ResultRow, RowKey
from llm_tts.validation_errors import typed_validation

RESULTS_FILE = "results.jsonl"


class ResultsStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RESULTS_FILE

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
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        with open(self.path, "ab") as f:
            f.write((row.model_dump_json() + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, rows: list[ResultRow]) -> None:
        """Replace the file with ``rows`` (a re-scored copy), atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join((row.model_dump_json() + "\n").encode("utf-8") for row in rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _cut_torn_tail(self) -> None:
        """Drop the bytes after the last newline: a write a killed process left half done."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            f.truncate(f.read().rfind(b"\n") + 1)
