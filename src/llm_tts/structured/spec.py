"""What a structured run must produce: a JSON value (schema or any object) or a tool call.

:class:`OutputSpec` is the one request type every face builds: the service from OpenAI's
``response_format`` / ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` fields
(:func:`output_spec_from_openai`), ChatTTS from ``with_structured_output`` and ``bind_tools``
(which produce those same OpenAI-shaped fields). Bad input is an InvalidParameterError naming
the field, before anything loads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.errors import InvalidParameterError

TOOL_CHOICES: tuple[str, ...] = ("auto", "none", "required")
IGNORE_ALL_ARGUMENTS = "*"  # ignore_argument_keys=["*"]: tool calls are voted on their name alone
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # OpenAI's rule for function names


@dataclass(frozen=True)
class ToolSpec:
    """One callable tool: OpenAI's ``function`` object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            fn["description"] = self.description
        return {"type": "function", "function": fn}


@dataclass(frozen=True)
class OutputSpec:
    """A structured run's output: ``json`` (``schema`` set, or any JSON object when None) or
    ``tools`` (``tool_choice``: auto, none, required, or a tool's name).

    ``constrained`` (default True) generates every candidate under the constraint where the
    backend offers it; False samples freely and relies on parsing (what the bench compares).
    ``ignore_argument_keys`` are argument keys left out when tool calls are voted ("*": all of
    them, so calls are voted on their name).
    """

    mode: Literal["json", "tools"]
    schema: Mapping[str, Any] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    ignore_argument_keys: frozenset[str] = frozenset()
    constrained: bool = True

    @property
    def forces_call(self) -> bool:
        return self.mode == "tools" and self.tool_choice not in ("auto", "none")

    @property
    def offered_tools(self) -> tuple[ToolSpec, ...]:
        """Tools the model may call: all (auto, required), the named one, or none."""
        if self.mode != "tools" or self.tool_choice == "none":
            return ()
        if self.tool_choice in ("auto", "required"):
            return self.tools
        return tuple(t for t in self.tools if t.name == self.tool_choice)

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.offered_tools if t.name == name), None)

    def constraint(self) -> DecodingConstraint | None:
        """What decoding must match: the schema, any JSON object, or a call of an offered tool.
        None where the output is free (tool_choice auto/none, or constrained=False)."""
        if not self.constrained:
            return None
        if self.mode == "json":
            return (
                DecodingConstraint.json_object()
                if self.schema is None
                else DecodingConstraint.json_schema(dict(self.schema))
            )
        if not self.forces_call:
            return None
        return DecodingConstraint.json_schema(tool_call_schema(self.offered_tools))


def tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """The JSON schema of one call ``{"name": ..., "arguments": {...}}`` of one of ``tools``."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": dict(t.parameters)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def check_json_schema(schema: Any, param: str) -> dict[str, Any]:
    """A JSON schema the grammar engine can compile, else InvalidParameterError naming ``param``."""
    if not isinstance(schema, Mapping):
        raise InvalidParameterError(param, type(schema).__name__, "a JSON schema must be an object")
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError) as e:
        raise InvalidParameterError(param, str(schema)[:80], f"is not JSON: {e}") from None
    import jsonschema
    import xgrammar

    try:
        jsonschema.Draft202012Validator.check_schema(dict(schema))  # what parsing checks candidates with
        xgrammar.Grammar.from_json_schema(text, any_whitespace=False)  # what constrained decoding compiles
    except jsonschema.SchemaError as e:
        raise InvalidParameterError(param, text[:120], f"is not a valid JSON schema: {e.message}") from None
    except (RuntimeError, ValueError, TypeError) as e:  # xgrammar's converter names what it cannot read
        raise InvalidParameterError(param, text[:120], f"is not a JSON schema this server can follow: {e}") from None
    return dict(schema)


def output_spec_from_openai(
    *,
    response_format: Any = None,
    tools: Any = None,
    tool_choice: Any = None,
    parallel_tool_calls: Any = None,
    ignore_argument_keys: Sequence[str] = (),
    constrained: bool = True,
) -> OutputSpec | None:
    """OpenAI's request fields as an OutputSpec (None: a plain text run). Raises
    InvalidParameterError naming the field for anything malformed."""
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise InvalidParameterError("parallel_tool_calls", parallel_tool_calls, "must be true or false")
    # parallel_tool_calls: every candidate makes at most one call, which both values allow
    # (true permits several calls in one turn, it does not require them).
    ignore = frozenset(_strings(ignore_argument_keys, "tts_tool_vote_ignore_keys"))
    if tools:
        if response_format is not None and _format_type(response_format) != "text":
            raise InvalidParameterError(
                "response_format", _format_type(response_format), "give tools or a JSON response_format, not both"
            )
        specs = _unique(tuple(_tool(i, t) for i, t in enumerate(_list(tools, "tools"))))
        names = [t.name for t in specs]
        choice = _tool_choice(tool_choice, names)
        return OutputSpec(
            "tools", tools=specs, tool_choice=choice, ignore_argument_keys=ignore, constrained=constrained
        )
    if tool_choice is not None and tool_choice != "none":
        raise InvalidParameterError("tool_choice", tool_choice, "needs tools")
    if response_format is None:
        return None
    kind = _format_type(response_format)
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputSpec("json", constrained=constrained)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or "schema" not in spec:
            raise InvalidParameterError(
                "response_format.json_schema", spec, "must be an object with a 'name' and a 'schema'"
            )
        schema = check_json_schema(spec["schema"], "response_format.json_schema.schema")
        return OutputSpec("json", schema=schema, constrained=constrained)
    raise InvalidParameterError("response_format.type", kind, "must be text, json_object or json_schema")


def _format_type(response_format: Any) -> Any:
    if not isinstance(response_format, Mapping):
        raise InvalidParameterError("response_format", type(response_format).__name__, "must be an object")
    return response_format.get("type")


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise InvalidParameterError(param, type(value).__name__, "must be a list")
    return list(value)


def _strings(value: Sequence[str], param: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameterError(param, value, "must be a list of non-empty strings")
    return list(value)


def _tool(i: int, tool: Any) -> ToolSpec:
    param = f"tools[{i}]"
    if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, Mapping) else type(tool).__name__
        raise InvalidParameterError(f"{param}.type", kind, "only function tools are supported")
    fn = tool.get("function")
    if not isinstance(fn, Mapping):
        raise InvalidParameterError(f"{param}.function", fn, "must be an object with a name")
    name = fn.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise InvalidParameterError(
            f"{param}.function.name", name, "a tool needs a name of 1-64 letters, digits, '_', '.' or '-'"
        )
    description = fn.get("description") or ""
    if not isinstance(description, str):
        raise InvalidParameterError(f"{param}.function.description", description, "must be a string")
    parameters = fn.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    parameters = check_json_schema(parameters, f"{param}.function.parameters")
    if parameters.get("type", "object") != "object":
        raise InvalidParameterError(f"{param}.function.parameters.type", parameters.get("type"), "must be 'object'")
    return ToolSpec(name, description, parameters)


def _unique(tools: tuple[ToolSpec, ...]) -> tuple[ToolSpec, ...]:
    """One tool per name: a repeated name (the same tool given twice, e.g. as a model and as its
    schema) keeps its first definition, since a call names the tool it calls."""
    seen: dict[str, ToolSpec] = {}
    for t in tools:
        seen.setdefault(t.name, t)
    return tuple(seen.values())


def _tool_choice(choice: Any, names: list[str]) -> str:
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        choice = "required" if choice == "any" else choice  # LangChain's spelling of "required"
        if choice in TOOL_CHOICES:
            return choice
        if choice in names:  # LangChain passes a bare tool name
            return choice
        raise InvalidParameterError(
            "tool_choice", choice, f"must be one of {', '.join(TOOL_CHOICES)} or a tool name ({', '.join(names)})"
        )
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if name in names:
            return str(name)
        raise InvalidParameterError("tool_choice.function.name", name, f"must name a tool ({', '.join(names)})")
    raise InvalidParameterError(
        "tool_choice", choice, "must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}"
    )
