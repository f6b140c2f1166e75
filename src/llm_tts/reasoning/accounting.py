"""Token accounting of thinking: which completion tokens were thinking, for usage and trainers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llm_tts.reasoning.parsers import ThinkingSplit
from llm_tts.types import Segment


def thinking_token_mask(
    segments: Sequence[Segment], split: ThinkingSplit, token_texts: Callable[[Sequence[int]], list[str]]
) -> list[int]:
    """1 for each completion token that belongs to the thinking (its markers included), 0 for the
    answer's: a token starting before the answer does is thinking. Injected tokens (a forced end
    marker, a tool's output) are marked by where they stand, like any other."""
    if not split.has_thinking:
        return [0] * sum(len(s) for s in segments)
    mask: list[int] = []
    offset = 0
    for seg in segments:
        for piece in token_texts(seg.token_ids):
            mask.append(1 if not split.finished or offset < split.answer_start else 0)
            offset += len(piece)
    return mask


def reasoning_token_count(
    segments: Sequence[Segment], split: ThinkingSplit, token_texts: Callable[[Sequence[int]], list[str]]
) -> int:
    """Thinking tokens the model sampled (injected ones are not counted): OpenAI's reasoning_tokens."""
    mask = thinking_token_mask(segments, split, token_texts)
    sampled = [s.is_model for s in segments for _ in s.token_ids]
    return sum(m and k for m, k in zip(mask, sampled))
