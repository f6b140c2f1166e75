"""Write the trace's JSON Schema (generated from llm_tts.trace.model) where it is published:
in the package (src/llm_tts/trace/trace.schema.json) and in the docs (docs/reference/).
Run after changing the trace model: `PYTHONPATH=src python scripts/write_trace_schema.py`."""

from __future__ import annotations

import json
from pathlib import Path

from llm_tts.trace.model import SCHEMA_FILE, json_schema

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    for folder in (ROOT / "src" / "llm_tts" / "trace", ROOT / "docs" / "reference"):
        (folder / SCHEMA_FILE).write_text(text)
        print(folder / SCHEMA_FILE)
