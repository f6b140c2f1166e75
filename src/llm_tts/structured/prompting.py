"""What the model reads in a structured run: the tools, and what shape to answer in.

Tools go through the model's chat template when it has a tools slot (``tools=`` of
``apply_chat_template``, e.g. Qwen, Llama 3.1); otherwise (SmolLM2's template has none) they are
listed in the system prompt :data:`TOOLS_SYSTEM_PROMPT`, which asks for a bare JSON call
``{"name": ..., "arguments": {...}}``. JSON mode adds one sentence to the system prompt asking
for JSON (with the schema when there is one). Constrained decoding enforces the shape either way;
the prompt tells the model what the fields mean.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from llm_tts.messages import ChatMessage
from llm_tts.structured.spec import OutputSpec

TOOLS_SYSTEM_PROMPT = (
    "You can call these tools:\n{tools}\n"
    'To call a tool, reply with only a JSON object {{"name": <tool name>, "arguments": <arguments object>}}. '
    "{choice}"
)
_CHOICE_HINT = {
    "auto": "If no tool is needed, answer the user directly. After a tool result, use it to answer.",
    "required": "You must call one of the tools.",
}


def tools_prompt(spec: OutputSpec) -> str | None:
    tools = spec.offered_tools
    if not tools:
        return None
    listing = "\n".join(json.dumps(t.to_openai()["function"], ensure_ascii=False) for t in tools)
    hint = _CHOICE_HINT.get(spec.tool_choice, f"You must call the tool {spec.tool_choice}.")
    return TOOLS_SYSTEM_PROMPT.format(tools=listing, choice=hint)


def json_prompt(spec: OutputSpec) -> str | None:
    if spec.mode != "json":
        return None
    if spec.schema is None:
        return "Answer with only a JSON object."
    return "Answer with only a JSON object that matches this JSON schema: " + json.dumps(
        dict(spec.schema), ensure_ascii=False
    )


def with_system_text(messages: Sequence[ChatMessage], text: str | None) -> list[ChatMessage]:
    """``text`` appended to the leading system message (one is added when there is none)."""
    out = list(messages)
    if not text:
        return out
    if out and out[0].role == "system":
        first = out[0]
        out[0] = first.model_copy(update={"content": f"{first.content}\n\n{text}" if first.content else text})
        return out
    return [ChatMessage(role="system", content=text), *out]
