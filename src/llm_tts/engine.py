"""The TTS engine: one entry point that ChatTTS (in-process) and the service both call.

``TTSEngine.plan(messages, config)`` does every check that needs no generation (the rules live in
:mod:`llm_tts.planning`): it renders the chat once to token ids and builds the scorer the config
names; ``plan_prompt(prompt, config)`` does the same for a raw prompt (text or token ids, no chat
template). ``TTSEngine.execute(plan)`` runs the strategy on the backend and returns the selected text
with its ``tts_metadata`` (assembled by :mod:`llm_tts.run_metadata`); ``run`` is both in one call.
The engine never knows which backend it runs on. :mod:`llm_tts.run_stream` runs a plan on a worker
as a stream of progress events ending in the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import llm_tts.scorers  # noqa: F401  (registers the built-in scorers)
from llm_tts.backends.base import Backend, EncodingBackend
from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.backends.usage import metered
from llm_tts.config import TTSConfig
from llm_tts.errors import DeadlineExceededError, RunCancelledError
from llm_tts.events import ProgressCallback
from llm_tts.messages import ChatMessage, question_of
from llm_tts.metadata import TTSMetadata
from llm_tts.planning import RunPlan, plan_prompt, plan_run
from llm_tts.progress import RunControl
from llm_tts.run_metadata import cost_attributes, run_metadata
from llm_tts.scorers.base import Scorer, ScorerContext, create_scorer
from llm_tts.spans import span
from llm_tts.strategies import (
    CodeExecutionSampler,
    PlainSampler,
    Sampler,
    SearchStopped,
    StrategyContext,
    StrategyOutcome,
)
from llm_tts.structured.selection import StructuredOutcome, run_structured
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


@dataclass(frozen=True)
class PartialRun:
    """What a run cut short (deadline, cancellation) had made: its prompt and every candidate
    finished or cut so far (none when it stopped inside its first backend call)."""

    prompt_token_ids: tuple[int, ...]
    trajectories: tuple[Trajectory, ...]
    strategy: str
    scorer: str


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
        run_attributes = {"llm_tts.strategy": plan.spec.name, "llm_tts.scorer": plan.scorer_name}
        with metered(run=True) as api, span("llm_tts.run", run_attributes) as run_span:
            try:
                if plan.output is not None:
                    outcome = run_structured(ctx, plan.output, plan.spec.size(plan.config))
                else:
                    outcome = _run_anytime(plan, ctx)
            except (DeadlineExceededError, RunCancelledError) as e:
                leaves = tuple(b.trajectory for b in ctx.partial_candidates())
                e.partial_run = PartialRun(tuple(plan.prompt_ids), leaves, plan.spec.name, plan.scorer_name)
                raise
            finally:
                ctx.end_step_span()
            metadata = run_metadata(plan, ctx, outcome, self.backend, api, time.perf_counter() - plan.started)
            run_span.set(cost_attributes(metadata.cost))
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
        with span("llm_tts.plan") as planning:
            plan = plan_run(
                self.backend,
                messages,
                config,
                scorer=self._scorer,
                code_runner=self.code_runner,
                prompt_token_ids=prompt_token_ids,
                output=output,
            )
            planning.set(
                {
                    "llm_tts.strategy": plan.spec.name,
                    "llm_tts.scorer": plan.scorer_name,
                    "llm_tts.prompt_tokens": len(plan.prompt_ids),
                }
            )
        return plan

    def plan_prompt(self, prompt: str | Sequence[int], config: TTSConfig | Mapping[str, Any]) -> RunPlan:
        """Plan a raw prompt, used as it is (no chat template): text, or token ids consumed exactly
        (a text completion; see :func:`llm_tts.planning.plan_prompt`)."""
        return plan_prompt(self.backend, prompt, config, scorer=self._scorer, code_runner=self.code_runner)

    # -- what a run needs beside its plan -------------------------------------------------------
    def _constraint(self, output: OutputSpec | None) -> DecodingConstraint | None:
        """The output's constraint where the backend can decode under one; else candidates are
        sampled freely and only parsing filters them (reported as constrained=False)."""
        if output is None or not self.backend.capabilities.constrained_decoding:
            return None
        return output.constraint()

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

    def _scorer(self, name: str) -> Scorer:
        with self._scorers_lock:
            if name not in self._scorers:
                self._scorers[name] = create_scorer(name, ScorerContext(self.backend, self.prm_model))
            return self._scorers[name]


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
