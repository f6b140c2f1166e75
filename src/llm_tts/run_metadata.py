"""A run's ``tts_metadata``, built from its plan, its strategy context and its outcome.

:mod:`llm_tts.metadata` is the schema; this module is the one place that fills it in, so every
face (ChatTTS, the service, ``llm-tts eval``) reports a run the same way.
"""

from __future__ import annotations

from typing import Any

from llm_tts.backends.base import Backend
from llm_tts.backends.usage import UsageMeter
from llm_tts.metadata import CandidateInfo, CodeExecutionTotals, TimingInfo, TTSMetadata, UsageInfo
from llm_tts.planning import RunPlan
from llm_tts.reasoning import reasoning_token_count, thinking_token_mask
from llm_tts.strategies import Beam, StrategyContext, StrategyOutcome
from llm_tts.structured.selection import StructuredOutcome


def run_metadata(
    plan: RunPlan,
    ctx: StrategyContext,
    outcome: StrategyOutcome,
    backend: Backend,
    api: UsageMeter,
    total_s: float,
) -> TTSMetadata:
    """The metadata of a finished run; ``api`` is the usage a remote API reported during it."""
    chosen, voted = outcome.selected, outcome.vote
    consensus = None if voted is None else voted.consensus
    prompt = len(plan.prompt_ids)
    if backend.capabilities.chat_only and api.requests:
        # A chat-only API renders the prompt itself: its own count is the real one.
        prompt = api.prompt_tokens // api.requests
    completion = ctx.completion_tokens
    metadata = TTSMetadata(
        strategy=plan.spec.name,
        scorer=plan.scorer_name,
        selected_answer=voted.answer if voted is not None else chosen.answer,
        aggregated_score=chosen.score,
        reasoning_steps=len(chosen.steps),
        consensus_score=consensus,
        uncertainty_score=None if consensus is None else 1.0 - consensus,
        answer_distribution=None if voted is None else voted.distribution,
        confidence=ctx.confidence,
        candidates=[candidate_info(b, plan, backend) for b in outcome.candidates],
        usage=UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        timings=TimingInfo(generation_s=ctx.generation_s, scoring_s=ctx.scoring_s, total_s=total_s),
        backend=backend.name,
        model=backend.model_name,
        stopped_by=ctx.stopped_by or "complete",
        code_execution=(
            CodeExecutionTotals.of([e for b in outcome.candidates for e in b.executions])
            if plan.config.code_execution
            else None
        ),
        structured=outcome.info if isinstance(outcome, StructuredOutcome) else None,
        selection=ctx.selection_info,
        route=ctx.route_info,
    )
    metadata.usage.completion_tokens_details.reasoning_tokens = sum(c.reasoning_tokens for c in metadata.candidates)
    return metadata


def candidate_info(beam: Beam, plan: RunPlan, backend: Backend) -> CandidateInfo:
    """One candidate as the metadata lists it."""
    return CandidateInfo(
        **_thinking_info(beam, backend),
        text=beam.text,
        answer=beam.answer,
        score=beam.score,
        step_scores=beam.step_scores,
        status=beam.status,
        num_tokens=beam.num_tokens,
        finish_reason=beam.finish_reason,
        truncated_steps=beam.truncated_steps,
        resampled=beam.resampled if plan.spec.name == "particle_filtering" else None,
        stopped_early=beam.aborted,
        code_executions=beam.executions,
    )


def _thinking_info(beam: Beam, backend: Backend) -> dict[str, Any]:
    """A candidate's thinking/answer split for its CandidateInfo (nothing when it has no thinking)."""
    split = beam.thinking_split
    if split is None or not split.has_thinking:
        return {}
    return {
        "reasoning": split.thinking,
        "answer_text": split.answer,
        "reasoning_tokens": reasoning_token_count(beam.trajectory.segments, split, backend.token_texts),
        "thinking_tokens": sum(thinking_token_mask(beam.trajectory.segments, split, backend.token_texts)),
        "thinking_finished": split.finished,
    }
