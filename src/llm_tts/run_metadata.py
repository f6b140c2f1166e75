"""A run's ``tts_metadata``, built from its plan, its strategy context and its outcome.

:mod:`llm_tts.metadata` is the schema; this module is the one place that fills it in, so every
face (ChatTTS, the service, ``llm-tts eval``) reports a run the same way.
"""

from __future__ import annotations

from typing import Any

from llm_tts.backends.base import Backend
from llm_tts.backends.cost import estimate_flops, injected_tokens, parameter_count
from llm_tts.backends.usage import UsageMeter
from llm_tts.metadata import CandidateInfo, CodeExecutionTotals, CostInfo, TimingInfo, TTSMetadata, UsageInfo
from llm_tts.planning import RunPlan
from llm_tts.reasoning import reasoning_token_count, thinking_token_mask
from llm_tts.strategies import Beam, StrategyContext, StrategyOutcome
from llm_tts.structured.selection import StructuredOutcome
from llm_tts.trace.model import Trace, TraceRun, TraceUsage


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
        cost=run_cost(ctx, outcome, backend),
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
    metadata.trace = run_trace(plan, ctx, outcome, metadata)
    return metadata


def run_trace(plan: RunPlan, ctx: StrategyContext, outcome: StrategyOutcome, metadata: TTSMetadata) -> Trace | None:
    """The run's trace (None without tts_trace), its summary taken from ``metadata``."""
    if not ctx.trace.enabled:
        return None
    run = TraceRun(
        strategy=metadata.strategy,
        scorer=metadata.scorer,
        model=metadata.model,
        started_at="",
        elapsed_s=metadata.timings.total_s,
        config=plan.config.model_dump(mode="json", exclude_none=True),
        stopped_by=None if metadata.stopped_by == "complete" else metadata.stopped_by,
        answer=metadata.selected_answer,
        usage=TraceUsage(
            prompt_tokens=metadata.usage.prompt_tokens, completion_tokens=metadata.usage.completion_tokens
        ),
    )
    return ctx.trace.finish(outcome.candidates, outcome.selected, outcome.vote, run)


def run_cost(ctx: StrategyContext, outcome: StrategyOutcome, backend: Backend) -> CostInfo:
    """What the run computed (see :mod:`llm_tts.backends.cost`)."""
    model = parameter_count(backend)
    scorer = None if ctx.scorer is None else parameter_count(ctx.scorer)
    beams = (*outcome.candidates, *ctx.partial_candidates())  # pruned candidates' injections too
    return CostInfo(
        prompt_tokens=ctx.cost.prompt_tokens,
        cached_prompt_tokens=ctx.cost.cached_prompt_tokens,
        generated_tokens=ctx.completion_tokens,
        injected_tokens=injected_tokens(b.trajectory for b in beams),
        scorer_tokens=ctx.cost.scorer_tokens,
        scorer_cached_tokens=ctx.cost.scorer_cached_tokens,
        model_parameters=model,
        scorer_parameters=scorer,
        flops=estimate_flops(ctx.cost, ctx.completion_tokens, model, scorer),
    )


def cost_attributes(cost: CostInfo) -> dict[str, int | float | None]:
    """A run's cost as span attributes (OpenTelemetry's gen_ai names where it has them)."""
    return {
        "gen_ai.usage.input_tokens": cost.prompt_tokens,
        "gen_ai.usage.output_tokens": cost.generated_tokens,
        "llm_tts.cached_tokens": cost.cached_prompt_tokens,
        "llm_tts.injected_tokens": cost.injected_tokens,
        "llm_tts.scorer_tokens": cost.scorer_tokens,
        "llm_tts.flops": cost.flops,
    }


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
