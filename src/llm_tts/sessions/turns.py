"""Aligning a conversation's turns at the token level.

Turn 2's prompt is the chat template's rendering of turn 1's messages, turn 1's answer and what
came after it (a tool's output, the next user message). Ideally it starts with turn 1's exact
tokens (prompt + sampled answer); a template may re-render the answer differently (drop its
end-of-turn token, strip whitespace, re-tokenise its text). :func:`align_turn` finds what came
between the turns either way, and says whether the re-rendering differed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TurnAlignment:
    between: tuple[int, ...]  # tokens after the previous answer, up to the next generation
    rerendered: bool  # the template rendered the previous answer differently from its sampled tokens
    rendered_answer: tuple[int, ...] = ()  # the re-rendered answer's tokens, when they differ


def align_turn(
    prev_prompt: Sequence[int],
    prev_answer: Sequence[int],
    next_prompt: Sequence[int],
    end_of_turn_ids: Collection[int],
) -> TurnAlignment | None:
    """What ``next_prompt`` adds after the previous turn; None when it does not continue it
    (the prompt before the previous answer changed, or the answer's end cannot be found)."""
    n, sampled = len(prev_prompt), len(prev_prompt) + len(prev_answer)
    if list(next_prompt[:sampled]) == [*prev_prompt, *prev_answer]:
        return TurnAlignment(tuple(next_prompt[sampled:]), rerendered=False)
    if list(next_prompt[:n]) != list(prev_prompt):
        # A template may open the answer in the prompt (a reasoning model's "<think>") and leave that
        # out when it re-renders the answer: the prompts must then agree up to the previous prompt's
        # last end-of-turn token (every message the same), and the re-rendered answer starts there.
        n, last = _common_prefix(prev_prompt, next_prompt), _last_end_of_turn(prev_prompt, end_of_turn_ids)
        if last < 0 or n <= last:
            return None
    # The answer was re-rendered: it ends at the first end-of-turn token after the old prompt.
    end = next((i for i in range(n, len(next_prompt)) if next_prompt[i] in end_of_turn_ids), None)
    if end is None:
        return None
    closed = bool(prev_answer) and prev_answer[-1] in end_of_turn_ids
    cut = end + 1 if closed else end  # an answer that kept its end-of-turn token: not repeated
    return TurnAlignment(tuple(next_prompt[cut:]), rerendered=True, rendered_answer=tuple(next_prompt[n:cut]))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _last_end_of_turn(ids: Sequence[int], end_of_turn_ids: Collection[int]) -> int:
    """Position of the last end-of-turn token (-1: none), so a prefix must go past it."""
    return max((i for i, t in enumerate(ids) if t in end_of_turn_ids), default=-1)


def extends_messages(earlier: Sequence[dict[str, Any]], answer: str, later: Sequence[dict[str, Any]]) -> bool:
    """``later`` is ``earlier`` plus the assistant's ``answer`` plus more messages."""
    k = len(earlier)
    if len(later) <= k or [message_key(m) for m in later[:k]] != [message_key(m) for m in earlier]:
        return False
    reply = later[k]
    return reply.get("role") == "assistant" and message_text(reply.get("content")).strip() == answer.strip()


def message_key(message: dict[str, Any]) -> tuple[str, str]:
    """What makes two messages the same for a conversation: role and text."""
    return str(message.get("role")), message_text(message.get("content"))


def message_text(content: Any) -> str:
    """A message's content as text (OpenAI's content parts joined)."""
    if isinstance(content, list):  # OpenAI's content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)
