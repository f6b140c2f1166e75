"""A candidate's text as a structured value: parsed, checked against its schema, canonicalised.

Every candidate gets a vote key, or none when it does not parse (it is then counted as invalid
and never selected). Keys are canonical JSON (sorted keys, no spaces, integral floats as ints),
so candidates that wrote the same object in a different key order or spacing vote together.
A tool call's key is its name and its canonical arguments, minus the keys the request says to
ignore (``"*"``: the name alone). With ``tool_choice="auto"`` a candidate that calls no tool
is a text answer, voted on its extracted final answer (or its whole text) among the calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_tts.answers import extract_answer
from llm_tts.structured.spec import IGNORE_ALL_ARGUMENTS, OutputSpec

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_TOOL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)  # templates that wrap calls
TEXT_KEY_PREFIX = "text: "


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Parsed:
    """What one candidate says: ``key`` to vote on (None: it did not parse, see ``error``), the
    parsed ``value`` (JSON mode) or ``call`` (a tool call; None for a text answer)."""

    key: str | None
    value: Any = None
    call: ToolCall | None = None
    error: str | None = None
    attempted_tool: str | None = None  # a failed call: the tool name it wrote, when it wrote one


def parse_candidate(text: str, spec: OutputSpec) -> Parsed:
    if spec.mode == "json":
        return _parse_json_value(text, spec)
    return _parse_tool_turn(text, spec)


def canonical(value: Any) -> str:
    """One text per JSON value: sorted keys, compact, 2.0 written as 2."""
    return json.dumps(_normal(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def call_key(call: ToolCall, ignore: frozenset[str]) -> str:
    if IGNORE_ALL_ARGUMENTS in ignore:
        return canonical({"name": call.name})
    args = {k: v for k, v in call.arguments.items() if k not in ignore}
    return canonical({"name": call.name, "arguments": args})


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _json_text(text: str) -> str:
    s = text.strip()
    if m := _FENCE.match(s):
        s = m.group(1)
    return s


def _load(text: str) -> tuple[Any, str | None]:
    """The JSON value of ``text``: the whole text (or its code fence), else the first JSON object
    written inside prose (what a model sampled without constraints often writes)."""
    body = _json_text(text)
    try:
        return json.loads(body), None
    except json.JSONDecodeError as e:
        start = body.find("{")
        while start != -1:
            try:
                return json.JSONDecoder().raw_decode(body, start)[0], None
            except json.JSONDecodeError:
                start = body.find("{", start + 1)
        return None, f"not JSON: {e.msg} at character {e.pos}"


def _schema_error(value: Any, schema: Mapping[str, Any] | None) -> str | None:
    if schema is None:
        return None
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(dict(schema)).iter_errors(value))
    return None if error is None else f"does not match the schema: {error.message}"


def _parse_json_value(text: str, spec: OutputSpec) -> Parsed:
    value, error = _load(text)
    if error is None and spec.schema is None and not isinstance(value, dict):
        error = "not a JSON object"
    error = error or _schema_error(value, spec.schema)
    return Parsed(None, error=error) if error else Parsed(canonical(value), value=value)


def _parse_tool_turn(text: str, spec: OutputSpec) -> Parsed:
    tagged = _TOOL_TAG.search(text)
    body = tagged.group(1) if tagged else text
    value, error = _load(body)
    looks_like_call = isinstance(value, dict) and "name" in value
    if not looks_like_call:
        if spec.forces_call or tagged:
            return Parsed(None, error=error or 'not a tool call {"name": ..., "arguments": {...}}')
        answer = extract_answer(text)
        return Parsed(TEXT_KEY_PREFIX + (answer if answer is not None else " ".join(text.split())))
    tool = spec.tool(str(value["name"]))
    if tool is None:
        names = ", ".join(t.name for t in spec.offered_tools) or "none"
        return Parsed(
            None,
            error=f"calls {value['name']!r}, which is not an offered tool ({names})",
            attempted_tool=str(value["name"]),
        )
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):  # OpenAI's wire form: arguments as a JSON string
        args, error = _load(args)
        if error:
            return Parsed(None, error=f"arguments are {error}", attempted_tool=tool.name)
    if not isinstance(args, dict):
        return Parsed(None, error="arguments must be a JSON object", attempted_tool=tool.name)
    error = _schema_error(args, tool.parameters)
    if error:
        return Parsed(None, error=f"arguments of {tool.name}: {error}", attempted_tool=tool.name)
    call = ToolCall(tool.name, args)
    return Parsed(call_key(call, spec.ignore_argument_keys), call=call)
