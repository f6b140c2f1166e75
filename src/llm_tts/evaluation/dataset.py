"""Evaluation data: a JSONL file of questions with their reference answers, checked before any run.

One JSON object per line with a question and an answer (field names configurable; an optional id
field names the question, else its row number does). Every problem is a
:class:`~llm_tts.errors.DatasetError` naming the file and the row, raised before anything runs.
``arithmetic`` names the small seeded set shipped with the package (see ``scripts/make_arithmetic_set.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llm_tts.errors import DatasetError, InvalidParameterError

SHIPPED_SETS: dict[str, str] = {"arithmetic": "arithmetic.jsonl"}


@dataclass(frozen=True)
class Question:
    id: str  # the id field's value, or the 1-based row number
    question: str
    answer: str  # the reference answer, compared by mathematical equivalence


def shipped_set_path(name: str) -> Path:
    """Path of a data set shipped with the package (``arithmetic``)."""
    return Path(str(resources.files("llm_tts.evaluation").joinpath("data", SHIPPED_SETS[name])))


def resolve_data_path(data: str | Path) -> Path:
    """``data`` as a file path, or a shipped set's name when no such file exists."""
    path = Path(data)
    if not path.exists() and str(data) in SHIPPED_SETS:
        return shipped_set_path(str(data))
    if not path.is_file():
        shipped = ", ".join(SHIPPED_SETS)
        raise DatasetError(
            f"data file {str(data)!r} does not exist (give a JSONL file, or a shipped set: {shipped})", param="data"
        )
    return path


def load_questions(
    data: str | Path,
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str = "id",
    limit: int | None = None,
) -> list[Question]:
    """Read and check every row (not only the first ``limit``): a bad row anywhere fails now, not
    an hour into a run. Answers may be strings or numbers; blank lines are skipped."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidParameterError("limit", limit, "must be an integer >= 1")
    path = resolve_data_path(data)
    questions: list[Question] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for row_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} row {row_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not valid JSON ({e.msg})", param="data") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}", param="data")
            question = _text_field(row, question_field, where, "question")
            answer = _text_field(row, answer_field, where, "answer")
            qid = str(row[id_field]) if id_field in row else str(row_number)
            if qid in seen:
                raise DatasetError(f"{where}: id {qid!r} repeats row {seen[qid]}", param=id_field)
            seen[qid] = row_number
            questions.append(Question(qid, question, answer))
    if not questions:
        raise DatasetError(f"{path.name}: no questions", param="data")
    return questions[:limit] if limit else questions


def _text_field(row: dict, name: str, where: str, role: str) -> str:
    if name not in row:
        fields = ", ".join(sorted(row)) or "none"
        raise DatasetError(f"{where}: no {role} field {name!r} (fields: {fields}; set --{role}-field)", param=name)
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise DatasetError(f"{where}: field {name!r} must be a non-empty string or number, got {value!r}", param=name)
    return str(value).strip()
