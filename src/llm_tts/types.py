"""Token-level core types: segments, trajectories and the steps that are views over them.

A trajectory is the prompt's token ids plus an ordered list of segments. A segment is a run of
tokens produced in one go, either sampled by the model or injected (a code block's output, a
template). Everything a strategy, scorer, backend or export needs is kept at the token level, so
a beam is extended by appending token ids, never by re-tokenising text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from llm_tts.errors import InvalidParameterError

Source = Literal["model", "injected"]
# "stop": ended on a stop string (the step delimiter), kept in the segment.
# "eos": the model emitted an end-of-sequence token (kept in token_ids, not in text).
# "length": hit max_tokens. None: injected, or not finished.
# "abort": a caller watching the generation stopped it (adaptive compute); the segment
# keeps the tokens generated until then.
FinishReason = Literal["stop", "eos", "length", "abort"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A contiguous run of tokens with their per-token log-probabilities.

    ``logprobs[i]`` is the log-probability the model's raw (temperature-free) distribution gave
    ``token_ids[i]``; ``top_logprobs[i]`` maps the k most likely token ids at that position to
    their log-probabilities. Both are ``None`` when not requested or not available.
    """

    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[int, float], ...] | None = None
    source: Source = "model"
    finish_reason: FinishReason | None = None
    stop_text: str | None = None

    def __post_init__(self) -> None:
        # Tuples, whatever sequence was passed: segments are shared and hashed, never mutated.
        for name in ("token_ids", "logprobs", "top_logprobs"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        n = len(self.token_ids)
        if self.logprobs is not None and len(self.logprobs) != n:
            raise InvalidParameterError("logprobs", f"{len(self.logprobs)} entries", f"must have one per token ({n})")
        if self.top_logprobs is not None and len(self.top_logprobs) != n:
            raise InvalidParameterError(
                "top_logprobs", f"{len(self.top_logprobs)} entries", f"must have one per token ({n})"
            )
        if self.source not in ("model", "injected"):
            raise InvalidParameterError("source", self.source, "must be 'model' or 'injected'")

    @classmethod
    def injected(cls, token_ids: Sequence[int], text: str) -> Segment:
        return cls(token_ids=tuple(token_ids), text=text, source="injected")

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def is_model(self) -> bool:
        return self.source == "model"


@dataclass(frozen=True, slots=True)
class Step:
    """A reasoning step: a view over ``segment.token_ids[start:end]`` of one trajectory."""

    segment: Segment
    start: int
    end: int
    text: str

    @property
    def token_ids(self) -> tuple[int, ...]:
        return self.segment.token_ids[self.start : self.end]

    @property
    def logprobs(self) -> tuple[float, ...] | None:
        lp = self.segment.logprobs
        return None if lp is None else lp[self.start : self.end]

    @property
    def top_logprobs(self) -> tuple[dict[int, float], ...] | None:
        tl = self.segment.top_logprobs
        return None if tl is None else tl[self.start : self.end]

    @property
    def num_tokens(self) -> int:
        return self.end - self.start

    @property
    def hit_length_limit(self) -> bool:
        """True when this step was cut by max_tokens rather than ending on its own."""
        return self.end == len(self.segment) and self.segment.finish_reason == "length"


@dataclass(frozen=True, slots=True)
class Trajectory:
    """A prompt plus the segments generated (or injected) after it. Immutable: extend() copies."""

    prompt_token_ids: tuple[int, ...]
    segments: tuple[Segment, ...] = field(default=())

    def extend(self, *segments: Segment) -> Trajectory:
        return Trajectory(self.prompt_token_ids, self.segments + tuple(segments))

    @property
    def completion_token_ids(self) -> tuple[int, ...]:
        return tuple(t for s in self.segments for t in s.token_ids)

    @property
    def token_ids(self) -> tuple[int, ...]:
        """Prompt plus completion: the exact prefix a backend continues from."""
        return self.prompt_token_ids + self.completion_token_ids

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def num_completion_tokens(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def num_model_tokens(self) -> int:
        return sum(len(s) for s in self.segments if s.is_model)

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.segments[-1].finish_reason if self.segments else None

    @property
    def ended(self) -> bool:
        """The model ended it (EOS), it ran out of tokens or it was aborted: it cannot be continued."""
        return self.finish_reason in ("eos", "length", "abort")

    def loss_mask(self) -> list[int]:
        """1 for completion tokens the model sampled, 0 for injected ones (for RL exports)."""
        return [1 if s.is_model else 0 for s in self.segments for _ in s.token_ids]

    def steps(self) -> list[Step]:
        """One step per model segment (step-wise generation puts one step in each segment)."""
        return [Step(s, 0, len(s), s.text) for s in self.segments if s.is_model and len(s)]


def text_after_injected(segments: Sequence[Segment]) -> str:
    """The text of the segments after the last injected one (all of them when none is): where a
    model that was shown a code block's output states its answer."""
    tail: list[str] = []
    for s in reversed(segments):
        if not s.is_model:
            break
        tail.append(s.text)
    return "".join(reversed(tail))


def split_steps(
    segment: Segment,
    token_texts: Sequence[str],
    delimiter: str | Sequence[str],
    decode: Callable[[Sequence[int]], str] | None = None,
) -> list[Step]:
    """Split one long segment into steps after each occurrence of ``delimiter`` (or of any of them).

    ``token_texts`` is the text of each token on its own (one linear decode, not one decode
    per prefix). A step ends with the token that completes a delimiter, so the delimiter stays
    in the step it closes and every step starts on a token boundary. ``decode`` gives each
    step's exact text (pieces of a multi-byte character do not decode on their own).
    """

    def text_of(a: int, b: int) -> str:
        return decode(segment.token_ids[a:b]) if decode else "".join(token_texts[a:b])

    if len(token_texts) != len(segment):
        raise InvalidParameterError(
            "token_texts", f"{len(token_texts)} entries", f"must have one per token ({len(segment)})"
        )
    delimiters = [d for d in ((delimiter,) if isinstance(delimiter, str) else delimiter) if d]
    keep = max((len(d) for d in delimiters), default=0)
    steps: list[Step] = []
    start = 0
    tail = ""
    for i, piece in enumerate(token_texts):
        tail = (tail + piece)[-(keep + len(piece)) :]
        if any(d in tail for d in delimiters) and i + 1 > start:
            steps.append(Step(segment, start, i + 1, text_of(start, i + 1)))
            start = i + 1
            tail = ""
    if start < len(segment):
        steps.append(Step(segment, start, len(segment), text_of(start, len(segment))))
    return steps
