"""Chat messages as they cross every boundary (ChatTTS, the service, backends)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_tts.errors import EmptyMessagesError, InvalidParameterError

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
# The system prompt the demo and the evaluation harness reason with: blank-line steps, boxed answer.
REASONING_SYSTEM_PROMPT = (
    "Reason step by step, separating steps with a blank line, and put the final answer in \\boxed{}."
)


class ChatMessage(BaseModel):
    """One chat turn. Content is plain text: list-of-text-block content is joined on input."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    role: Role
    content: str = Field(default="")
    name: str | None = None
    tool_call_id: str | None = None
    reasoning: str | None = None  # an assistant turn's thinking (reasoning models), apart from its content

    def to_template_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_call_id:
            d["tool_call_id"] = self.tool_call_id
        if self.name:
            d["name"] = self.name
        if self.reasoning:
            # Under both names templates read (Qwen3's reads reasoning_content); most drop earlier thinking.
            d["reasoning_content"] = d["reasoning"] = self.reasoning
        return d


def text_from_content(content: Any, *, param: str = "messages.content") -> str:
    """Flatten OpenAI-style content (a string or a list of text blocks) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            else:
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise InvalidParameterError(param, kind, "only text content is supported (no images or audio)")
        return "".join(parts)
    raise InvalidParameterError(param, type(content).__name__, "content must be a string or a list of text blocks")


def coerce_messages(messages: Sequence[ChatMessage | dict[str, Any]] | str) -> list[ChatMessage]:
    """Accept a question string, ChatMessages or OpenAI-style dicts; reject empty input."""
    if isinstance(messages, str):
        messages = [ChatMessage(role="user", content=messages)]
    out: list[ChatMessage] = []
    for i, m in enumerate(messages):
        if isinstance(m, ChatMessage):
            out.append(m)
            continue
        if not isinstance(m, dict):
            raise InvalidParameterError(f"messages[{i}]", type(m).__name__, "each message must be an object")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidParameterError(f"messages[{i}].role", role, f"must be one of {', '.join(ROLES)}")
        content = text_from_content(m.get("content"), param=f"messages[{i}].content")
        if role == "assistant" and m.get("tool_calls"):
            content = with_tool_calls(content, _openai_calls(m["tool_calls"], f"messages[{i}].tool_calls"))
        thinking = (m.get("reasoning") or m.get("reasoning_content")) if role == "assistant" else None
        out.append(
            ChatMessage(
                role=role,
                content=content,
                name=m.get("name"),
                tool_call_id=m.get("tool_call_id"),
                reasoning=thinking if isinstance(thinking, str) and thinking else None,
            )
        )
    if not out:
        raise EmptyMessagesError()
    return out


def question_of(messages: Sequence[ChatMessage]) -> str:
    """The last user turn: what scorers and verifiers judge answers against."""
    for m in reversed(messages):
        if m.role == "user":
            return m.content
    return messages[-1].content if messages else ""


# -- function calling: an assistant turn's tool calls, as the model reads them next turn -------------------
def with_tool_calls(text: str, calls: Sequence[dict[str, Any]]) -> str:
    """``text`` followed by ``calls`` ({"name", "arguments", "id"}) as JSON: the chat has no
    structured tool-call slot here, so the model reads the earlier turn's calls as text."""
    if not calls:
        return text
    return (text + "\n" if text else "") + json.dumps({"tool_calls": list(calls)}, ensure_ascii=False)


def _openai_calls(calls: Any, param: str) -> list[dict[str, Any]]:
    """OpenAI's wire form (function.arguments as a JSON string) as {"name", "arguments", "id"}."""
    if not isinstance(calls, list):
        raise InvalidParameterError(param, type(calls).__name__, "must be a list of tool calls")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidParameterError(f"{param}[{j}].function", fn, "must be an object with a name")
        args = fn.get("arguments") or "{}"
        try:
            parsed = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            parsed = args  # kept as the model wrote it: the next turn should see its own mistake
        out.append({"name": fn["name"], "arguments": parsed, "id": call.get("id")})
    return out
