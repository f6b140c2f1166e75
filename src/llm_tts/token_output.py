"""Token in, token out: the selected answer's token ids and logprobs, in OpenAI's shape.

Every face reports the same data (the service's ``choices[0].logprobs`` and ``token_ids``,
ChatTTS's ``response_metadata``): what the engine consumed (the prompt's ids) and produced (the
selected trajectory's ids), and for each token the model sampled its logprob with its ``token_id``.

Logprobs are the model's raw distribution, before temperature, top_p and penalties: what vLLM V1
returns by default (``logprobs_mode="raw_logprobs"``) and what both local backends record.
Injected segments (a tool's output put into a trajectory) were not sampled, so they have ids in
``token_ids`` but no logprob entries: ``logprobs.content`` lists the model-sampled tokens, in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from llm_tts.backends.base import Backend
from llm_tts.types import Trajectory

# JSON has no -inf; OpenAI reports impossible tokens with this floor.
LOGPROB_FLOOR = -9999.0


class TopLogprob(BaseModel):
    """One of the most likely tokens at a position (OpenAI's shape plus its ``token_id``)."""

    token: str = Field(description="the token's text on its own")
    logprob: float = Field(description="its log-probability under the model's raw distribution")
    bytes: list[int] | None = Field(None, description="UTF-8 bytes of the token's text")
    token_id: int = Field(description="the token's id in the model's vocabulary")


class TokenLogprob(TopLogprob):
    """A sampled token: its logprob and the most likely tokens at its position."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list, description="top_logprobs most likely tokens")


class ChoiceLogprobs(BaseModel):
    """``choices[i].logprobs``: one entry per token the model sampled."""

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class TokenOutput:
    """What the engine consumed and produced for one answer."""

    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]  # every completion token, injected ones included
    logprobs: ChoiceLogprobs | None  # None when the backend returned none


def token_output(trajectory: Trajectory, backend: Backend, top_logprobs: int = 0) -> TokenOutput:
    """The token-level output of ``trajectory`` (``top_logprobs``: entries kept per position)."""
    model_segments = [s for s in trajectory.segments if s.is_model]
    sampled = [t for s in model_segments for t in s.token_ids]
    lps = [lp for s in model_segments for lp in (s.logprobs or ())]
    logprobs = None
    if len(lps) == len(sampled):
        tops = [top for s in model_segments for top in (s.top_logprobs or ({},) * len(s))]
        ranked = [sorted(t.items(), key=lambda kv: -kv[1])[:top_logprobs] for t in tops]
        texts = _texts(backend, [*sampled, *(tid for row in ranked for tid, _ in row)])
        content = [
            TokenLogprob(
                **_entry(token_id, lp, texts).model_dump(),
                top_logprobs=[_entry(tid, v, texts) for tid, v in row],
            )
            for token_id, lp, row in zip(sampled, lps, ranked)
        ]
        logprobs = ChoiceLogprobs(content=content)
    return TokenOutput(trajectory.prompt_token_ids, trajectory.completion_token_ids, logprobs)


def _texts(backend: Backend, ids: Sequence[int]) -> dict[int, str]:
    unique = list(dict.fromkeys(ids))
    return dict(zip(unique, backend.token_texts(unique))) if unique else {}


def _entry(token_id: int, logprob: float, texts: dict[int, str]) -> TopLogprob:
    text = texts.get(token_id, "")
    value = logprob if math.isfinite(logprob) else LOGPROB_FLOOR
    return TopLogprob(token=text, logprob=value, bytes=list(text.encode("utf-8")), token_id=token_id)
