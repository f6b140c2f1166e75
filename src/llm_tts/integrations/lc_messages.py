"""LangChain messages in, llm_tts chat messages out.

Every LangChain message type maps onto a chat role: system, human -> user, AI (earlier turns,
including their tool calls, rendered as text so the model sees them) and tool results. Content is
a string or a list of text blocks; anything else (images, audio, files) is a typed error naming
the message, because the models TTS runs on here read text only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages import (
    ChatMessage as LCChatMessage,
)

from llm_tts.errors import EmptyMessagesError, InvalidParameterError
from llm_tts.messages import ROLES, ChatMessage, text_from_content, with_tool_calls

# Blocks an AI turn may carry besides its text; they are represented elsewhere (tool_calls) or
# are the model's own scratch work, so they are not fed back as prompt text.
_AI_SKIPPED_BLOCKS = frozenset({"reasoning", "thinking", "tool_call", "tool_call_chunk", "tool_use"})
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "developer": "system", "function": "tool"}


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[ChatMessage]:
    """Convert a LangChain conversation; raise typed errors for what cannot be represented."""
    out = [_convert(i, m) for i, m in enumerate(messages)]
    if not out:
        raise EmptyMessagesError()
    return out


def _convert(i: int, m: BaseMessage) -> ChatMessage:
    param = f"messages[{i}].content"
    if isinstance(m, SystemMessage):
        return ChatMessage(role="system", content=text_from_content(m.content, param=param))
    if isinstance(m, HumanMessage):
        return ChatMessage(role="user", content=text_from_content(m.content, param=param), name=m.name)
    if isinstance(m, AIMessage):
        return ChatMessage(role="assistant", content=_ai_text(m, param), name=m.name, reasoning=_ai_reasoning(m))
    if isinstance(m, ToolMessage):
        return ChatMessage(role="tool", content=_tool_text(m.content, param), tool_call_id=m.tool_call_id, name=m.name)
    if isinstance(m, FunctionMessage):
        return ChatMessage(role="tool", content=text_from_content(m.content, param=param), name=m.name)
    if isinstance(m, LCChatMessage):
        role = _ROLE_ALIASES.get(m.role, m.role)
        if role not in ROLES:
            raise InvalidParameterError(f"messages[{i}].role", m.role, f"must be one of {', '.join(ROLES)}")
        return ChatMessage(role=role, content=text_from_content(m.content, param=param), name=m.name)  # type: ignore[arg-type]  # checked against ROLES above
    raise InvalidParameterError(f"messages[{i}]", type(m).__name__, "unsupported LangChain message type")


def _ai_text(m: AIMessage, param: str) -> str:
    content: Any = m.content
    if isinstance(content, list):
        content = [b for b in content if not (isinstance(b, dict) and b.get("type") in _AI_SKIPPED_BLOCKS)]
    text = text_from_content(content, param=param)
    calls = [{"name": c["name"], "arguments": c["args"], "id": c.get("id")} for c in m.tool_calls]
    return with_tool_calls(text, calls)


def _ai_reasoning(m: AIMessage) -> str | None:
    """An earlier answer's thinking: ChatDeepSeek's additional_kwargs, else standard reasoning blocks."""
    kwarg = m.additional_kwargs.get("reasoning_content")
    if isinstance(kwarg, str) and kwarg:
        return kwarg
    blocks = m.content if isinstance(m.content, list) else []
    parts = [
        b["reasoning"] for b in blocks if isinstance(b, dict) and b.get("type") == "reasoning" and b.get("reasoning")
    ]
    return "".join(parts) or None


def _tool_text(content: Any, param: str) -> str:
    # Tool results may be JSON-ish blocks ({"type": "json", ...}); keep them readable as text.
    if isinstance(content, list):
        content = [
            {"type": "text", "text": json.dumps(b.get("json"), ensure_ascii=False)}
            if isinstance(b, dict) and b.get("type") == "json"
            else b
            for b in content
        ]
    return text_from_content(content, param=param)
