"""A :class:`DecodingConstraint` as request fields of an OpenAI-compatible API.

Chat completions take OpenAI's ``response_format`` (``json_schema`` / ``json_object``, which
OpenAI, OpenRouter, vLLM and the llm-tts service read); a self-hosted server (provider ``vllm``)
also takes vLLM's ``structured_outputs`` for a regex or a grammar, and token-level completions
take ``structured_outputs`` for every kind. What a provider cannot take is a CapabilityError
before any request is sent; a server that refuses the fields answers with its own 4xx.
"""

from __future__ import annotations

from typing import Any

from llm_tts.backends.constraints import DecodingConstraint, schema_of
from llm_tts.errors import CapabilityError


def chat_constraint_fields(constraint: DecodingConstraint | None, provider: str) -> dict[str, Any]:
    """Fields for /chat/completions."""
    if constraint is None:
        return {}
    if constraint.kind == "json_schema":
        schema = {"name": "output", "schema": schema_of(constraint), "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if constraint.kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if provider != "vllm":
        raise CapabilityError(
            f"constrained decoding ({constraint.kind}): provider {provider!r} takes only JSON schemas and JSON "
            "objects (response_format); a regex or grammar needs a vLLM server"
        )
    return completion_constraint_fields(constraint)


def completion_constraint_fields(constraint: DecodingConstraint | None) -> dict[str, Any]:
    """Fields for /completions on a vLLM server (its ``structured_outputs`` request field)."""
    if constraint is None:
        return {}
    if constraint.kind == "json_schema":
        return {"structured_outputs": {"json": schema_of(constraint), "disable_any_whitespace": True}}
    if constraint.kind == "json_object":
        return {"structured_outputs": {"json": {"type": "object"}, "disable_any_whitespace": True}}
    key = "regex" if constraint.kind == "regex" else "grammar"
    return {"structured_outputs": {key: constraint.spec}}
