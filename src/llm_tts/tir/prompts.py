"""A few-shot prompt that teaches a small chat model the default code tags (tests, bench, docs)."""

from __future__ import annotations

from llm_tts.messages import ChatMessage

TIR_SYSTEM_PROMPT = (
    "You solve arithmetic with Python. Write code between <tool_call> and </tool_call>; its output "
    "appears between <tool_output> and </tool_output>. Then give the final answer in \\boxed{}."
)
TIR_SHOTS: tuple[tuple[str, str], ...] = (
    (
        "What is 37 * 43?",
        "<tool_call>\nprint(37 * 43)\n</tool_call>\n<tool_output>\n1591\n</tool_output>\nThe answer is \\boxed{1591}.",
    ),
    (
        "What is 815 + 279 - 64?",
        "<tool_call>\nprint(815 + 279 - 64)\n</tool_call>\n<tool_output>\n1030\n</tool_output>\n"
        "The answer is \\boxed{1030}.",
    ),
)


def tir_messages(question: str) -> list[ChatMessage]:
    """The system prompt, the worked examples as earlier turns, then ``question``."""
    messages = [ChatMessage(role="system", content=TIR_SYSTEM_PROMPT)]
    for q, a in TIR_SHOTS:
        messages += [ChatMessage(role="user", content=q), ChatMessage(role="assistant", content=a)]
    return [*messages, ChatMessage(role="user", content=question)]
