"""A MkDocs hook for the docs build: tables generated from the code, so the site never drifts from it.

A page that holds ``<!-- table: tts-config -->`` gets every ``TTSConfig`` field (type, default,
meaning); ``<!-- table: service-settings -->`` every ``ServiceSettings`` field with its flag and
environment variable. Both read the pydantic fields' descriptions (the same text ``--help`` shows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pydantic.fields import FieldInfo


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _type(info: FieldInfo) -> str:
    name = getattr(info.annotation, "__name__", None) if isinstance(info.annotation, type) else None
    return _cell(name or str(info.annotation).replace("typing.", ""))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "computed"
    return "" if info.default is None else f"`{_cell(repr(info.default))}`"


def tts_config_table() -> str:
    from llm_tts.config import TTSConfig

    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in TTSConfig.model_fields.items():
        rows.append(f"| `{name}` | `{_type(info)}` | {_default(info)} | {_cell(info.description or '')} |")
    return "\n".join(rows)


def service_settings_table() -> str:
    from llm_tts.service.settings import settings_fields

    rows = ["| setting | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for name, info, source in settings_fields():
        rows.append(
            f"| `{name}` | `{source.flag}` | `{source.env}` | {_default(info)} | {_cell(info.description or '')} |"
        )
    return "\n".join(rows)


TABLES = {"tts-config": tts_config_table, "service-settings": service_settings_table}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    for name, table in TABLES.items():
        marker = f"<!-- table: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, table())
    return markdown
