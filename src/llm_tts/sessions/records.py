"""What a session keeps: the session itself and one record per chat completion it served.

A record holds the request, the response and the token-level truth: the prompt's token ids, and
for every candidate the strategy considered (one for plain sampling, all of them for a search)
its segments' token ids and logprobs (model-sampled or injected), step scores, aggregated score
and whether it was selected, kept or pruned. Samples for training are built from these alone
(:mod:`llm_tts.sessions.samples`), so an export needs no model. A request that asked for
``tts_trace`` keeps its run's trace in the record's ``trace`` (once: not again in ``response``).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from llm_tts.engine import PartialRun, TTSResult
from llm_tts.types import Segment, Trajectory

# completed: the run answered in full; truncated: it answered, cut by a limit (max_tokens, the
# token budget, the deadline under tts_anytime); aborted: it never answered (the deadline, the
# client leaving, the server stopping): the record keeps the tokens it had made.
RecordStatus = Literal["completed", "truncated", "aborted"]
StopReason = Literal["stop", "length", "budget", "deadline", "disconnect", "cancelled", "error"]


class SessionOptions(BaseModel):
    """Chosen when a session is created."""

    token_continuation: bool = Field(
        default=False,
        description="continue each turn from the previous turn's exact token ids (prompt + sampled answer) "
        "plus the new messages' tokens, instead of re-rendering the whole chat",
    )
    ttl_s: float | None = Field(
        default=None, gt=0, description="idle seconds before the session expires; unset: the server's"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="the caller's own labels, kept with the session")


class SessionInfo(BaseModel):
    id: str
    created_at: float
    last_used_at: float
    ttl_s: float
    options: SessionOptions
    end_of_turn_ids: list[int] = Field(description="the model's end-of-turn token ids (for aligning turns)")
    num_records: int = 0

    @property
    def expires_at(self) -> float:
        return self.last_used_at + self.ttl_s

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class SegmentRecord(BaseModel):
    token_ids: list[int]
    logprobs: list[float] | None = Field(None, description="per token; None for injected segments")
    source: Literal["model", "injected"] = "model"

    @classmethod
    def of(cls, segment: Segment) -> SegmentRecord:
        lps = None if segment.logprobs is None else [_finite(lp) for lp in segment.logprobs]
        return cls(token_ids=list(segment.token_ids), logprobs=lps, source=segment.source)


class CandidateRecord(BaseModel):
    """One candidate of a run: its token-level output and how the strategy judged it."""

    index: int
    segments: list[SegmentRecord]
    step_scores: list[float] = Field(default_factory=list)
    score: float | None = None
    status: Literal["selected", "kept", "pruned"]
    finish_reason: Literal["stop", "length"] = "stop"
    answer: str | None = None
    thinking_tokens: int = Field(
        default=0, description="reasoning models: token_ids[:thinking_tokens] are the thinking, the rest the answer"
    )

    @property
    def token_ids(self) -> list[int]:
        return [t for s in self.segments for t in s.token_ids]

    @property
    def loss_mask(self) -> list[int]:
        """1 for tokens the model sampled, 0 for injected ones."""
        return [1 if s.source == "model" else 0 for s in self.segments for _ in s.token_ids]

    @property
    def logprobs(self) -> list[float]:
        """Per token: the sampled token's logprob, 0.0 where not sampled (or not returned)."""
        out: list[float] = []
        for s in self.segments:
            sampled = s.source == "model" and s.logprobs is not None
            out.extend(s.logprobs if sampled and s.logprobs is not None else [0.0] * len(s.token_ids))
        return out


class SessionRecord(BaseModel):
    """One completion served in a session: a chat completion, or a text completion (no messages)."""

    id: str = Field(default_factory=lambda: f"rec-{uuid.uuid4().hex}")
    session_id: str
    index: int = Field(default=0, description="order in the session, set by the store")
    created_at: float
    finished_at: float
    status: RecordStatus
    request: dict[str, Any] = Field(description="the request body as received")
    response: dict[str, Any] | None = Field(
        None, description="the completion as returned (its tts_metadata.trace is kept in trace instead)"
    )
    messages: list[dict[str, Any]] = Field(
        description="the request's messages as role/content dicts (none for a text completion)"
    )
    prompt_token_ids: list[int] = Field(description="what the engine consumed")
    continued_from: str | None = Field(
        None, description="token_continuation: the record whose exact tokens this prompt extends"
    )
    strategy: str
    scorer: str
    candidates: list[CandidateRecord]
    selected: int = Field(description="index of the selected candidate in candidates")
    stop_reason: StopReason = Field(
        default="stop",
        description="why the run ended: stop (on its own), length (max_tokens), budget (tts_token_budget), "
        "deadline (tts_deadline), disconnect (the client left), cancelled (the server stopped it), error (it failed)",
    )
    error: str | None = Field(default=None, description="aborted runs: the error the request ended with")
    reward: float | None = Field(
        default=None, description="the trainer's reward for this turn (POST /sessions/{id}/rewards); None: unset"
    )
    trace: dict[str, Any] | None = Field(
        default=None,
        description="tts_trace: the run's trace (llm_tts.trace; code outputs as the model saw them, never the raw "
        "capture); None when the request did not ask for one",
    )

    @property
    def chosen(self) -> CandidateRecord:
        return self.candidates[self.selected]

    @property
    def completion_id(self) -> str | None:
        """The ``id`` of the chat completion this record answered with (None: it never answered)."""
        return (self.response or {}).get("id")

    @property
    def answer_text(self) -> str:
        """The answer as sent: a chat completion's message content, or a text completion's text."""
        choice = ((self.response or {}).get("choices") or [{}])[0]
        if "text" in choice:
            return str(choice["text"] or "")
        return str((choice.get("message") or {}).get("content") or "")


def record_of(
    session_id: str,
    request: dict[str, Any],
    messages: list[dict[str, Any]],
    result: TTSResult,
    response: dict[str, Any],
    *,
    started: float,
    continued_from: str | None = None,
) -> SessionRecord:
    """The record of one finished run (``result``) answering ``request``."""
    meta = result.metadata
    trajectories = result.candidate_trajectories or (result.trajectory,)
    infos = meta.candidates or []
    candidates = []
    for i, trajectory in enumerate(trajectories):
        info = infos[i] if i < len(infos) else None
        candidates.append(
            CandidateRecord(
                index=i,
                segments=[SegmentRecord.of(s) for s in trajectory.segments],
                step_scores=list(info.step_scores) if info else [],
                score=info.score if info else None,
                status=info.status if info else "selected",
                finish_reason=info.finish_reason if info else result.finish_reason,
                answer=info.answer if info else None,
                thinking_tokens=info.thinking_tokens if info else 0,
            )
        )
    selected = next((c.index for c in candidates if c.status == "selected"), None)
    if selected is None or candidates[selected].token_ids != list(result.trajectory.completion_token_ids):
        selected = _index_of(trajectories, result.trajectory)
    trace = None
    if meta.trace is not None:  # kept once, in the record's own field
        trace = meta.trace.to_json()
        for choice in response.get("choices") or []:
            if isinstance(choice.get("tts_metadata"), dict):
                choice["tts_metadata"] = {**choice["tts_metadata"], "trace": None}
    stopped_by = meta.stopped_by
    stop_reason: StopReason = (
        stopped_by if stopped_by in ("budget", "deadline") else "length" if result.finish_reason == "length" else "stop"
    )
    return SessionRecord(
        session_id=session_id,
        created_at=started,
        finished_at=time.time(),
        status="completed" if stop_reason == "stop" else "truncated",
        stop_reason=stop_reason,
        request=request,
        response=response,
        messages=messages,
        prompt_token_ids=list(result.trajectory.prompt_token_ids),
        continued_from=continued_from,
        strategy=meta.strategy,
        scorer=meta.scorer,
        candidates=candidates,
        selected=selected,
        trace=trace,
    )


def aborted_record_of(
    session_id: str,
    request: dict[str, Any],
    messages: list[dict[str, Any]],
    partial: PartialRun | None,
    *,
    stop_reason: StopReason,
    error: str,
    started: float,
    continued_from: str | None = None,
) -> SessionRecord:
    """The record of a run that never answered: every candidate it had made (none when it
    stopped inside its first backend call, or before it started), all marked "length"; the
    longest stands as the selected one."""
    trajectories = partial.trajectories if partial is not None else ()
    candidates = [
        CandidateRecord(
            index=i,
            segments=[SegmentRecord.of(s) for s in t.segments],
            status="kept",
            finish_reason="length",
        )
        for i, t in enumerate(trajectories)
    ] or [CandidateRecord(index=0, segments=[], status="kept", finish_reason="length")]
    selected = max(candidates, key=lambda c: len(c.token_ids)).index
    candidates[selected].status = "selected"
    return SessionRecord(
        session_id=session_id,
        created_at=started,
        finished_at=time.time(),
        status="aborted",
        stop_reason=stop_reason,
        error=error,
        request=request,
        response=None,
        messages=messages,
        prompt_token_ids=list(partial.prompt_token_ids) if partial is not None else [],
        continued_from=continued_from,
        strategy=partial.strategy if partial is not None else str(request.get("tts_strategy") or ""),
        scorer=partial.scorer if partial is not None else str(request.get("tts_scorer") or ""),
        candidates=candidates,
        selected=selected,
    )


def _index_of(trajectories: tuple[Trajectory, ...], chosen: Trajectory) -> int:
    ids = chosen.completion_token_ids
    return next((i for i, t in enumerate(trajectories) if t.completion_token_ids == ids), 0)


def _finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else -9999.0  # JSON has no -inf
