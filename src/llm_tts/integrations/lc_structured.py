"""ChatTTS's structured faces: ``bind_tools`` and ``with_structured_output`` in LangChain terms.

Both produce OpenAI's request fields (``tools``, ``tool_choice``, ``response_format``,
``parallel_tool_calls``) bound on the model, so the in-process engine and the service read the
same thing (:func:`llm_tts.structured.output_spec_from_openai`). The selected tool call comes
back in ``tts_metadata['structured']`` from both faces and becomes ``AIMessage.tool_calls``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from llm_tts.errors import InvalidParameterError
from llm_tts.structured import OutputSpec, output_spec_from_openai
from llm_tts.structured.spec import check_json_schema

# Per-call fields that shape a structured run rather than the TTS search (not TTSConfig fields).
OUTPUT_FIELDS: tuple[str, ...] = (
    "tools",
    "tool_choice",
    "response_format",
    "parallel_tool_calls",
    "tts_tool_vote_ignore_keys",
)
StructuredMethod = Literal["json_schema", "json_mode", "function_calling"]


def pop_output_fields(overrides: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the structured-output fields of a call's keyword arguments."""
    return {name: overrides.pop(name) for name in OUTPUT_FIELDS if overrides.get(name) is not None}


def output_spec(fields: dict[str, Any]) -> OutputSpec | None:
    """The run's OutputSpec (typed errors for bad tools, tool_choice, response_format)."""
    return output_spec_from_openai(
        response_format=fields.get("response_format"),
        tools=fields.get("tools"),
        tool_choice=fields.get("tool_choice"),
        parallel_tool_calls=fields.get("parallel_tool_calls"),
        ignore_argument_keys=fields.get("tts_tool_vote_ignore_keys") or (),
    )


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """LangChain tools, functions, Pydantic models or OpenAI tool dicts as OpenAI tool dicts."""
    out = []
    for i, tool in enumerate(tools):
        try:
            out.append(convert_to_openai_tool(tool))
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidParameterError(f"tools[{i}]", type(tool).__name__, f"is not a tool: {e}") from None
    return out


def tool_choice_field(tool_choice: Any) -> Any:
    """LangChain's tool_choice spellings ("any", True, a name) in OpenAI's ("required", a name)."""
    if tool_choice is True:
        return "required"
    if tool_choice is False:
        return "none"
    return tool_choice


def tool_calls_of(tts_metadata: dict[str, Any]) -> list[ToolCall]:
    structured = tts_metadata.get("structured") or {}
    return [
        ToolCall(name=c["name"], args=c.get("arguments") or {}, id=c.get("id"), type="tool_call")
        for c in structured.get("tool_calls") or []
    ]


def invalid_tool_calls_of(tts_metadata: dict[str, Any]) -> list[InvalidToolCall]:
    structured = tts_metadata.get("structured") or {}
    return [
        InvalidToolCall(
            name=c.get("name"), args=c.get("args"), id=c.get("id"), error=c.get("error"), type="invalid_tool_call"
        )
        for c in structured.get("invalid_tool_calls") or []
    ]


def tool_call_chunks_of(tts_metadata: dict[str, Any]) -> list[ToolCallChunk]:
    return [
        ToolCallChunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False), id=c["id"], index=i)
        for i, c in enumerate(tool_calls_of(tts_metadata))
    ]


def response_format_of(schema: Any, method: StructuredMethod, strict: bool | None) -> dict[str, Any]:
    """OpenAI's response_format for ``with_structured_output``'s schema (Pydantic model,
    TypedDict, JSON schema dict); a schema that is not JSON-schema-able is InvalidParameterError."""
    if method == "json_mode":
        return {"type": "json_object"}
    try:
        fn = convert_to_openai_tool(schema)["function"]
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidParameterError("schema", repr(schema)[:80], f"is not JSON-schema-able: {e}") from None
    body = {"name": fn["name"], "schema": check_json_schema(fn.get("parameters") or {}, "schema")}
    if fn.get("description"):
        body["description"] = fn["description"]
    if strict is not None:
        body["strict"] = strict
    return {"type": "json_schema", "json_schema": body}


def structured_runnable(
    bound: Runnable[LanguageModelInput, Any], schema: Any, include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """``bound`` (the model with its response_format) followed by the parser of ``schema``'s
    type, with langchain-openai's ``include_raw`` shape: {raw, parsed, parsing_error}."""
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        parser = PydanticOutputParser(pydantic_object=schema)
    else:
        parser = JsonOutputParser()
    if not include_raw:
        return bound | parser
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parse.with_fallbacks([fallback], exception_key="parsing_error")


def ls_format(schema: Any, method: StructuredMethod, strict: bool | None) -> dict[str, Any]:
    """What LangChain's tracing records for a structured call (``ls_structured_output_format``)."""
    return {"kwargs": {"method": method, "strict": strict}, "schema": convert_to_json_schema(schema)}
