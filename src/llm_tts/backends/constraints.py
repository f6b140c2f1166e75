"""Constrained decoding: what a sample must match, as a typed, hashable request field.

A :class:`DecodingConstraint` rides on :class:`~llm_tts.backends.base.SamplingParams` to every
backend: vLLM turns it into its structured-outputs parameters, the transformers backend into an
xgrammar token mask applied inside its decoding loop (:mod:`llm_tts.backends.grammar_mask`), and
the OpenAI backend into ``response_format`` where the server takes one. A backend that cannot
honour it raises :class:`~llm_tts.errors.CapabilityError` before generating.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from llm_tts.errors import InvalidParameterError

ConstraintKind = Literal["json_schema", "json_object", "regex", "grammar"]
CONSTRAINT_KINDS: tuple[str, ...] = ("json_schema", "json_object", "regex", "grammar")


@dataclass(frozen=True, slots=True)
class DecodingConstraint:
    """``kind`` and its ``spec``: a JSON schema as JSON text, a regex, an EBNF grammar
    (GBNF as xgrammar and vLLM read it), or nothing for ``json_object`` (any JSON object)."""

    kind: ConstraintKind
    spec: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CONSTRAINT_KINDS:
            raise InvalidParameterError("constraint.kind", self.kind, f"must be one of {', '.join(CONSTRAINT_KINDS)}")
        if self.kind != "json_object" and not (isinstance(self.spec, str) and self.spec.strip()):
            raise InvalidParameterError(
                "constraint.spec", self.spec, f"a {self.kind} constraint needs a non-empty spec"
            )
        if self.kind == "json_schema":
            schema_of(self)  # must be a JSON object

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> DecodingConstraint:
        """A constraint from a JSON schema dict (key order kept: it is the order properties are generated in)."""
        if not isinstance(schema, dict):
            raise InvalidParameterError("json_schema", type(schema).__name__, "a JSON schema must be an object")
        try:
            text = json.dumps(schema, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise InvalidParameterError("json_schema", str(schema)[:80], f"not JSON-serialisable: {e}") from None
        return cls("json_schema", text)

    @classmethod
    def json_object(cls) -> DecodingConstraint:
        return cls("json_object")


def schema_of(constraint: DecodingConstraint) -> dict[str, Any]:
    """The JSON schema a ``json_schema`` constraint holds."""
    try:
        schema = json.loads(constraint.spec)
    except json.JSONDecodeError as e:
        raise InvalidParameterError("json_schema", constraint.spec[:80], f"not valid JSON: {e}") from None
    if not isinstance(schema, dict):
        raise InvalidParameterError("json_schema", constraint.spec[:80], "a JSON schema must be an object")
    return schema
