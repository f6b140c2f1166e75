"""The TTS engine: one entry point that ChatTTS (in-process) and the service both call.

``TTSEngine.plan(messages, config)`` does every check that needs no generation: it renders the
chat once to token ids and builds the scorer the config names. ``TTSEngine.execute(plan)`` runs
the strategy on the backend and returns the selected text with its ``tts_metadata``; ``run`` is
both in one call. The engine never knows which backend it runs on. :mod:`llm_tts.run_stream`
runs a plan on a worker as a stream of progress events ending in the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import llm_tts.scorers  # noqa: F401  (registers the built-in scorers)
from llm_tts.backends.base import Backend, EncodingBackend, ToolTemplateBackend, check_prompts_fit, check_token_ids
from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.backends.usage import metered
from llm_tts.config import STRATEGY_FIELDS, TTSConfig
from llm_tts.errors import CapabilityError, DeadlineExceededError, InvalidParameterError, UnknownNameError
from llm_tts.events import ProgressCallback
from llm_tts.messages import ChatMessage, coerce_messages, question_of
from llm_tts.metadata import CandidateInfo, CodeExecutionTotals, TimingInfo, TTSMetadata, UsageInfo
from llm_tts.progress import RunControl
from llm_tts.reasoning import (
    PROMPT_TAIL_TOKENS,
    ThinkingReader,
    create_thinking_parser,
    reasoning_token_count,
    thinking_token_mask,
)
from llm_tts.scorers.base import Scorer, ScorerContext, create_scorer, scorer_names
from llm_tts.strategies import (
    VOTING_SCORER,
    Beam,
    CodeExecutionSampler,
    PlainSampler,
    Sampler,
    SearchStopped,
    StrategyContext,
    StrategyOutcome,
    StrategySpec,
    get_strategy,
    strategies_taking,
)
from llm_tts.structured.prompting import json_prompt, tools_prompt, with_system_text
from llm_tts.structured.selection import STRUCTURED_STRATEGIES, StructuredOutcome, run_structured
from llm_tts.structured.spec import OutputSpec
from llm_tts.tir import CodeExecutionLoop, CodeExecutionSettings, CodeRunner
from llm_tts.types import Trajectory


@dataclass(frozen=True)
class TTSResult:
    text: str  # the selected completion, as the assistant message content
    finish_reason: Literal["stop", "length"]  # OpenAI meaning
    metadata: TTSMetadata
    trajectory: Trajectory  # token-level record of the selected candidate
    # Token-level record of every candidate, in the order of metadata.candidates.
    candidate_trajectories: tuple[Trajectory, ...] = ()
    reasoning: str | None = None  # the selected candidate's thinking (text is then its answer part)
    reasoning_tokens: int = 0  # thinking tokens the selected candidate sampled


class TTSEngine:
    """Runs strategies x scorers on one backend. Thread-safe: no per-request state is kept.

    Scorers are built once per name and reused across requests (a PRM loads its model once);
    everything that belongs to one request lives in that request's ``StrategyContext``.
    """

    def __init__(
        self, backend: Backend, *, prm_model: str | None = None, code_runner: CodeRunner | None = None
    ) -> None:
        self.backend = backend
        self.prm_model = prm_model
        self._scorers: dict[str, Scorer] = {}
        self._scorers_lock = threading.Lock()
        # code_execution: the sandbox pool, started by the first request that asks for it
        self._code_runner = code_runner
        self._code_lock = threading.Lock()

    @classmethod
    def create(
        cls, model: str | None = None, backend: str = "auto", *, prm_model: str | None = None, **backend_options: Any
    ) -> TTSEngine:
        from llm_tts.backends import create_backend

        return cls(create_backend(backend, model, **backend_options), prm_model=prm_model)

    def validate(self, messages: Sequence[ChatMessage], config: TTSConfig) -> None:
        """Raise the typed error a run would raise for bad input (:meth:`plan`, result unused)."""
        self.plan(messages, config)

    def run(
        self,
        messages: Sequence[ChatMessage],
        config: TTSConfig,
        *,
        progress: ProgressCallback | None = None,
        control: RunControl | None = None,
        output: OutputSpec | None = None,
    ) -> TTSResult:
        """Run ``config``'s strategy on ``messages``: the selected text and its metadata
        (``output``: a structured run, see :mod:`llm_tts.structured`)."""
        return self.execute(self.plan(messages, config, output=output), progress=progress, control=control)

    def execute(
        self, plan: RunPlan, *, progress: ProgressCallback | None = None, control: RunControl | None = None
    ) -> TTSResult:
        """Run a planned request: the selected text and its metadata (total_s counts from planning)."""
        ctx = StrategyContext(
            plan.spec.name,
            self.backend,
            plan.scorer,
            plan.config,
            plan.prompt_ids,
            question_of(plan.messages),
            progress,
            control,
            sampler=self._sampler(plan),
            constraint=self._constraint(plan.output),
            reasoning=plan.reasoning,
        )
        outcome: StrategyOutcome
        with metered() as api:
            if plan.output is not None:
                outcome = run_structured(ctx, plan.output, plan.spec.size(plan.config))
            else:
                outcome = _run_anytime(plan, ctx)
        prompt_tokens = len(plan.prompt_ids)
        if self.backend.capabilities.chat_only and api.requests:
            # A chat-only API renders the prompt itself: its own count is the real one.
            prompt_tokens = api.prompt_tokens // api.requests
        metadata = self._metadata(plan, ctx, outcome, prompt_tokens, time.perf_counter() - plan.started)
        chosen = outcome.selected
        split = chosen.thinking_split
        thinking = split.thinking if split is not None and split.has_thinking else None
        if isinstance(outcome, StructuredOutcome):
            text = outcome.text
        else:
            text = chosen.text if thinking is None or split is None else split.answer
        trajectories = tuple(b.trajectory for b in outcome.candidates)
        selected = metadata.candidates[outcome.candidates.index(chosen)] if chosen in outcome.candidates else None
        return TTSResult(
            text,
            chosen.finish_reason,
            metadata,
            chosen.trajectory,
            trajectories,
            reasoning=thinking,
            reasoning_tokens=selected.reasoning_tokens if selected is not None else 0,
        )

    def close(self) -> None:
        with self._scorers_lock:
            for scorer in self._scorers.values():
                scorer.close()
            self._scorers.clear()
        with self._code_lock:
            if self._code_runner is not None:
                self._code_runner.close()
                self._code_runner = None
        self.backend.close()

    # -- planning: every check that needs no generation ---------------------------------------
    def plan(
        self,
        messages: Sequence[ChatMessage] | Any,
        config: TTSConfig | Mapping[str, Any],
        *,
        prompt_token_ids: Sequence[int] | None = None,
        output: OutputSpec | None = None,
    ) -> RunPlan:
        """Check a request and prepare it to run; bad input raises the typed error a run would raise.

        Checks messages, strategy, scorer, sizes and the context length, renders the chat to token
        ids once and builds the scorer (cached per name; one that cannot run on this backend fails
        here). :meth:`execute` runs the plan without repeating any of it. ``prompt_token_ids``
        (token in): the prompt the engine consumes instead of rendering ``messages``, which then
        only give the question (answer extraction, PRM and judge scorers).
        """
        started = time.perf_counter()
        msgs = coerce_messages(messages)
        resolved = resolve_config(config)
        spec, config, scorer_name = resolved.spec, resolved.config, resolved.scorer_name
        _check_requirements(spec, self.backend)
        if config.continue_final_message and msgs[-1].role != "assistant":
            raise InvalidParameterError(
                "continue_final_message", True, "needs messages that end with an assistant message to continue"
            )
        if config.code_execution:
            self._check_code_execution(spec, config)
        _check_token_output(config, self.backend)
        if output is not None:
            if spec.name not in STRUCTURED_STRATEGIES:
                raise InvalidParameterError(
                    "tts_strategy",
                    spec.name,
                    f"structured output and tool calls run with {' or '.join(STRUCTURED_STRATEGIES)}: they sample "
                    "whole candidates, where a step search would cut an object at its step delimiters",
                )
            if prompt_token_ids is not None:
                raise InvalidParameterError(
                    "prompt_token_ids",
                    f"{len(prompt_token_ids)} ids",
                    "cannot be combined with tools or response_format, which render the prompt",
                )
            prompt_ids = self._structured_prompt(msgs, output)
        elif prompt_token_ids is not None:
            prompt_ids = self._checked_token_prompt(prompt_token_ids)
        else:
            prompt_ids = self._render(msgs, config)
        check_prompts_fit([prompt_ids], self.backend.max_context_tokens)
        scorer = None if scorer_name == VOTING_SCORER else self._scorer(scorer_name)
        reader = self._reader(config, prompt_ids)
        return RunPlan(msgs, spec, config, scorer_name, scorer, tuple(prompt_ids), started, output, reader)

    # -- reasoning models: the chat template's variables, and how thinking is parsed ------------------
    def _render(self, messages: list[ChatMessage], config: TTSConfig) -> list[int]:
        if config.chat_template_kwargs:
            return self.backend.render_chat(messages, template_kwargs=config.chat_template_kwargs)
        return self.backend.render_chat(messages)

    def _reader(self, config: TTSConfig, prompt_ids: Sequence[int]) -> ThinkingReader:
        """The run's thinking reader; a bad parser name or budget setting fails here."""
        hf_tokenizer = getattr(getattr(self.backend, "tokenizer", None), "hf", None)
        parser = create_thinking_parser(
            config.reasoning_parser,
            begin=config.reasoning_begin,
            end=config.reasoning_end,
            tokenizer=hf_tokenizer,
            chat_template_kwargs=config.chat_template_kwargs,
        )
        if config.tts_thinking_budget is not None:
            check_thinking_budget(config, parser.end_marker, self.backend)
        tail = "" if self.backend.capabilities.chat_only else self.backend.decode(prompt_ids[-PROMPT_TAIL_TOKENS:])
        return ThinkingReader(parser).with_prompt(tail)

    # -- structured output and function calling ----------------------------------------------------------------
    def _structured_prompt(self, messages: list[ChatMessage], output: OutputSpec) -> list[int]:
        """Tools through the chat template where it has a tools slot, else in the system prompt."""
        tools = [t.to_openai() for t in output.offered_tools]
        backend = self.backend
        ids = (
            backend.render_chat_with_tools(messages, tools)
            if tools and isinstance(backend, ToolTemplateBackend)
            else None
        )
        if ids is not None:
            return list(ids)
        return self.backend.render_chat(with_system_text(messages, tools_prompt(output) or json_prompt(output)))

    def _constraint(self, output: OutputSpec | None) -> DecodingConstraint | None:
        """The output's constraint where the backend can decode under one; else candidates are
        sampled freely and only parsing filters them (reported as constrained=False)."""
        if output is None or not self.backend.capabilities.constrained_decoding:
            return None
        return output.constraint()

    def _checked_token_prompt(self, ids: Sequence[int]) -> list[int]:
        if not self.backend.capabilities.token_prompts or self.backend.capabilities.chat_only:
            raise CapabilityError(
                f"prompt_token_ids: backend {self.backend.name!r} takes chats, not token ids; send messages only"
            )
        if not ids:
            raise InvalidParameterError("prompt_token_ids", [], "a prompt needs at least one token")
        vocab_size = getattr(self.backend, "vocab_size", None)  # local backends know it; a remote API may not
        try:
            check_token_ids([ids], vocab_size if isinstance(vocab_size, int) else 2**63)
        except InvalidParameterError as e:
            raise InvalidParameterError("prompt_token_ids", e.value, e.limit) from None
        return list(ids)

    # -- code execution (tool-integrated reasoning) ------------------------------------
    def _check_code_execution(self, spec: StrategySpec, config: TTSConfig) -> None:
        """A request with code_execution fails here when the sandbox or the backend cannot do it."""
        if not spec.code_execution or config.tts_stop_confidence is not None:
            # Both watch each path's tokens as one sampled segment; a path that runs code is several.
            raise InvalidParameterError(
                "code_execution",
                True,
                f"does not combine with {spec.name if not spec.code_execution else 'tts_stop_confidence'} (yet)",
            )
        if not isinstance(self.backend, EncodingBackend):
            raise CapabilityError(
                f"code_execution: backend {self.backend.name!r} cannot tokenize a code block's output to insert it"
            )
        self.code_runner()  # SandboxUnavailableError when this machine cannot sandbox

    def code_runner(self) -> CodeRunner:
        """The engine's sandbox pool (started on first use)."""
        with self._code_lock:
            if self._code_runner is None:
                self._code_runner = CodeRunner()
            return self._code_runner

    def _sampler(self, plan: RunPlan) -> Sampler:
        """How the run's samples grow: through the model's code blocks with code_execution, else plainly."""
        c = plan.config
        if not c.code_execution or not isinstance(self.backend, EncodingBackend):
            return PlainSampler()
        loop = CodeExecutionLoop(
            CodeExecutionSettings.from_config(c),
            self.code_runner(),
            self.backend,
            plan.messages,
            continue_final_message=c.continue_final_message,
        )
        return CodeExecutionSampler(loop)

    def _thinking_info(self, beam: Beam) -> dict[str, Any]:
        """A candidate's thinking/answer split for its CandidateInfo (nothing when it has no thinking)."""
        split = beam.thinking_split
        if split is None or not split.has_thinking:
            return {}
        return {
            "reasoning": split.thinking,
            "answer_text": split.answer,
            "reasoning_tokens": reasoning_token_count(beam.trajectory.segments, split, self.backend.token_texts),
            "thinking_tokens": sum(thinking_token_mask(beam.trajectory.segments, split, self.backend.token_texts)),
            "thinking_finished": split.finished,
        }

    def _scorer(self, name: str) -> Scorer:
        with self._scorers_lock:
            if name not in self._scorers:
                scorer = create_scorer(name, ScorerContext(self.backend, self.prm_model))
                _check_capabilities(scorer, self.backend)
                self._scorers[name] = scorer
            return self._scorers[name]

    def _metadata(
        self, plan: RunPlan, ctx: StrategyContext, outcome: StrategyOutcome, prompt: int, total_s: float
    ) -> TTSMetadata:
        chosen, voted = outcome.selected, outcome.vote
        consensus = None if voted is None else voted.consensus
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
            candidates=[
                CandidateInfo(
                    **self._thinking_info(b),
                    text=b.text,
                    answer=b.answer,
                    score=b.score,
                    step_scores=b.step_scores,
                    status=b.status,
                    num_tokens=b.num_tokens,
                    finish_reason=b.finish_reason,
                    truncated_steps=b.truncated_steps,
                    resampled=b.resampled if plan.spec.name == "particle_filtering" else None,
                    stopped_early=b.aborted,
                    code_executions=b.executions,
                )
                for b in outcome.candidates
            ],
            usage=UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
            timings=TimingInfo(generation_s=ctx.generation_s, scoring_s=ctx.scoring_s, total_s=total_s),
            backend=self.backend.name,
            model=self.backend.model_name,
            stopped_by=ctx.stopped_by or "complete",
            code_execution=(
                CodeExecutionTotals.of([e for b in outcome.candidates for e in b.executions])
                if plan.config.code_execution
                else None
            ),
            structured=outcome.info if isinstance(outcome, StructuredOutcome) else None,
        )
        metadata.usage.completion_tokens_details.reasoning_tokens = sum(c.reasoning_tokens for c in metadata.candidates)
        return metadata


def check_thinking_budget(config: TTSConfig, end_marker: str | None, backend: Backend) -> None:
    """Budget forcing injects the end-of-thinking marker as tokens and continues from them."""
    if end_marker is None:
        raise InvalidParameterError(
            "tts_thinking_budget",
            config.tts_thinking_budget,
            f"reasoning_parser={config.reasoning_parser!r} has no end-of-thinking marker to inject",
        )
    if not isinstance(backend, EncodingBackend) or not backend.capabilities.continuation:
        raise CapabilityError(
            f"tts_thinking_budget: backend {backend.name!r} cannot continue a trajectory from injected tokens; use a "
            "local backend or a server with a token-level API (vLLM, SGLang)"
        )


def _run_anytime(plan: RunPlan, ctx: StrategyContext) -> StrategyOutcome:
    """Run the strategy; a spent token budget, or a deadline under ``tts_anytime``, ends it with the
    best answer among the candidates made so far."""
    try:
        return plan.spec.run(ctx)
    except SearchStopped:
        outcome = ctx.anytime_outcome()
        if outcome is None:  # pragma: no cover - a budget >= 1 is spent only after a call
            raise
        return outcome
    except DeadlineExceededError:
        outcome = ctx.anytime_outcome() if plan.config.tts_anytime else None
        if outcome is None:
            raise  # no tts_anytime, or nothing generated yet: the deadline error stands
        ctx.stop("deadline", "deadline reached: answering with the best so far")
        return outcome


@dataclass(frozen=True)
class RunPlan:
    """A checked request, ready to run: what :meth:`TTSEngine.plan` found and built."""

    messages: list[ChatMessage]
    spec: StrategySpec
    config: TTSConfig  # with tts_budget applied
    scorer_name: str
    scorer: Scorer | None  # None for the vote (VOTING_SCORER)
    prompt_ids: tuple[int, ...]  # the chat, rendered once
    started: float  # time.perf_counter() when planning began; total_s counts from here
    output: OutputSpec | None = None  # a structured run (JSON or tool call)
    reasoning: ThinkingReader | None = None  # how the run's completions split into thinking and answer


@dataclass(frozen=True)
class ResolvedConfig:
    """A config checked without a backend: its strategy, sizes and scorer name."""

    spec: StrategySpec
    config: TTSConfig  # with tts_budget applied
    scorer_name: str


def resolve_config(config: TTSConfig | Mapping[str, Any]) -> ResolvedConfig:
    """Every check of a config that needs no backend (strategy, budget and sizes, scorer name),
    so a caller can refuse bad settings before a model loads (``llm-tts eval`` does)."""
    if not isinstance(config, TTSConfig):
        config = TTSConfig.create(**dict(config))
    spec = get_strategy(config.tts_strategy)
    scorer_name = _resolve_scorer(spec, config.tts_scorer)  # unknown names first: their errors list the valid ones
    _check_fields(spec, config)
    return ResolvedConfig(spec, _apply_budget(spec, config), scorer_name)


def _check_fields(spec: StrategySpec, config: TTSConfig) -> None:
    """A strategy-owned field set explicitly for a strategy that does not take it is refused: no
    field is silently ignored."""
    for name in sorted((config.model_fields_set & STRATEGY_FIELDS) - spec.fields):
        takers = " and ".join(strategies_taking(name))
        raise InvalidParameterError(
            name, getattr(config, name), f"{spec.name} does not take it (it is a field of {takers})"
        )


def _check_requirements(spec: StrategySpec, backend: Backend) -> None:
    """What the strategy declared it cannot run without, checked before anything runs."""
    caps = backend.capabilities
    if "continuation" in spec.requires and not caps.continuation:
        raise CapabilityError(
            f"continuation: {spec.name} extends partial answers step by step and {backend.name} cannot "
            "continue an assistant message here; use self_consistency or offline_bon, or a server with a "
            "token-level API (vLLM, SGLang)",
            param="tts_strategy",
        )
    if "top_logprobs" in spec.requires and (not caps.logprobs or caps.max_top_logprobs < 1):
        raise CapabilityError(
            f"{spec.name} needs top-k token logprobs, which backend {backend.name!r} does not return; "
            "use self_consistency (with tts_stop_confidence to stop early)",
            param="tts_strategy",
        )


def _apply_budget(spec: StrategySpec, config: TTSConfig) -> TTSConfig:
    """``tts_budget`` overrides the strategy's main size; that size must be within its cap."""
    if config.tts_budget is not None:
        size = spec.size_for_budget(config, config.tts_budget)
        if size > spec.size_cap:
            raise InvalidParameterError(
                "tts_budget",
                config.tts_budget,
                f"sets {spec.size_field}={size}, which must be <= {spec.size_cap} for {spec.name}",
            )
        config = config.model_copy(update={spec.size_field: size})
    size = spec.size(config)
    if size > spec.size_cap:
        raise InvalidParameterError(spec.size_field, size, f"must be <= {spec.size_cap} for {spec.name}")
    return config


def _resolve_scorer(spec: StrategySpec, requested: str | None) -> str:
    """The scorer name to run: the request's, else the strategy's default; voting needs a vote."""
    name = requested or spec.default_scorer
    valid = sorted({*scorer_names(), VOTING_SCORER})
    if name not in valid:
        raise UnknownNameError("scorer", name, valid, param="tts_scorer")
    if name == VOTING_SCORER and spec.needs_scorer:
        step_scorers = ", ".join(s for s in valid if s != VOTING_SCORER)
        raise InvalidParameterError(
            "tts_scorer",
            name,
            f"{VOTING_SCORER} only works with self_consistency; {spec.name} needs one of: {step_scorers}",
        )
    return name


def _check_capabilities(scorer: Scorer, backend: Backend) -> None:
    """A scorer the backend cannot feed is refused before anything is generated."""
    caps = backend.capabilities
    if scorer.needs_logprobs and not caps.logprobs:
        raise CapabilityError(
            f"scorer {scorer.name!r} needs token logprobs, which backend {backend.name!r} cannot return"
        )
    if scorer.top_logprobs_needed > caps.max_top_logprobs:
        raise CapabilityError(
            f"scorer {scorer.name!r} needs top_logprobs={scorer.top_logprobs_needed} but backend {backend.name!r} "
            f"returns at most {caps.max_top_logprobs}"
        )


def _check_token_output(config: TTSConfig, backend: Backend) -> None:
    """logprobs / top_logprobs the backend cannot return are refused before anything runs."""
    if config.top_logprobs and not config.logprobs:
        raise InvalidParameterError("top_logprobs", config.top_logprobs, "needs logprobs=true (as in OpenAI's API)")
    if config.logprobs and not backend.capabilities.logprobs:
        raise CapabilityError(f"logprobs: backend {backend.name!r} returns no token logprobs")
    if (config.top_logprobs or 0) > backend.capabilities.max_top_logprobs:
        raise CapabilityError(
            f"top_logprobs={config.top_logprobs} exceeds backend {backend.name!r}'s limit "
            f"{backend.capabilities.max_top_logprobs}"
        )
