"""Structured output and tool calling with test-time scaling: every candidate is generated under
a constraint (JSON schema, JSON object, or a call of one of the tools), parsed, and the selected
output is the vote over the candidates' parsed, canonicalised values (or the best score)."""

from llm_tts.structured.spec import OutputSpec, ToolSpec, output_spec_from_openai

__all__ = ["OutputSpec", "ToolSpec", "output_spec_from_openai"]
