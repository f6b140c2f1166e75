"""The TTS engine: one entry point that ChatTTS (in-process) and the service both call.

``TTSEngine.run(messages, config)`` renders the chat once to token ids, builds the scorer the
config names, runs the strategy on the backend and returns the selected text with its
``tts_metadata``. The engine never knows which backend it runs on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from llm_tts.backends.base import Backend, check_prompts_fit
from llm_tts.backends.usage import metered
from llm_tts.config import TTSConfig
from llm_tts.errors import CapabilityError, InvalidParameterError, UnknownNameError
from llm_tts.messages import ChatMessage, coerce_messages, question_of
from llm_tts.metadata import CandidateInfo, TimingInfo, TTSMetadata, UsageInfo
from llm_tts.progress import ProgressCallback, RunControl
import llm_tts.scorers  # noqa: F401  (registers the built-in scorers)
from llm_tts.scorers.base import Scorer, ScorerContext, create_scorer, scorer_names
from llm_tts.strategies import VOTING_SCORER, StrategyContext, StrategyOutcome, StrategySpec, get_strategy
from llm_tts.types import Trajectory


@dataclass(frozen=True)
class TTSResult:
    text: str  # the selected completion, as the assistant message content
    finish_reason: Literal["stop", "length"]  # OpenAI meaning
    metadata: TTSMetadata
    trajectory: Trajectory  # token-level record of the selected candidate


class TTSEngine:
    """Runs strategies x scorers on one backend. Thread-safe: no per-request state is kept.

    Scorers are built once per name and reused across requests (a PRM loads its model once);
    everything that belongs to one request lives in that request's ``StrategyContext``.
    """

    def __init__(self, backend: Backend, *, prm_model: str | None = None) -> None:
        self.backend = backend
        self.prm_model = prm_model
        self._scorers: dict[str, Scorer] = {}
        self._scorers_lock = threading.Lock()

    @classmethod
    def create(cls, model: str | None = None, backend: str = "auto", *, prm_model: str | None = None, **backend_options: Any) -> TTSEngine:
        from llm_tts.backends import create_backend

        return cls(create_backend(backend, model, **backend_options), prm_model=prm_model)

    def validate(self, messages: Sequence[ChatMessage], config: TTSConfig) -> None:
        """Raise the typed error a run would raise for bad input, before any generation.

        Checks messages, strategy, scorer, sizes and the context length, and builds the scorer
        (cached, so ``run`` reuses it): a scorer that cannot run on this backend fails here.
        """
        plan = self._plan(messages, config)
        if plan.scorer_name != VOTING_SCORER:
            self._scorer(plan.scorer_name)

    def run(
        self,
        messages: Sequence[ChatMessage],
        config: TTSConfig,
        *,
        progress: ProgressCallback | None = None,
        control: RunControl | None = None,
    ) -> TTSResult:
        """Run ``config``'s strategy on ``messages``: the selected text and its metadata."""
        start = time.perf_counter()
        plan = self._plan(messages, config)
        scorer = None if plan.scorer_name == VOTING_SCORER else self._scorer(plan.scorer_name)
        ctx = StrategyContext(
            plan.spec.name, self.backend, scorer, plan.config, plan.prompt_ids, question_of(plan.messages), progress, control
        )
        with metered() as api:
            outcome = plan.spec.run(ctx)
        prompt_tokens = len(plan.prompt_ids)
        if self.backend.capabilities.chat_only and api.requests:
            # A chat-only API renders the prompt itself: its own count is the real one.
            prompt_tokens = api.prompt_tokens // api.requests
        metadata = self._metadata(plan, ctx, outcome, prompt_tokens, time.perf_counter() - start)
        chosen = outcome.selected
        return TTSResult(chosen.text, chosen.finish_reason, metadata, chosen.trajectory)

    def close(self) -> None:
        with self._scorers_lock:
            for scorer in self._scorers.values():
                scorer.close()
            self._scorers.clear()
        self.backend.close()

    # -- planning: every check that needs no generation ---------------------------------------
    def _plan(self, messages: Sequence[ChatMessage] | Any, config: TTSConfig | Mapping[str, Any]) -> _Plan:
        if not isinstance(config, TTSConfig):
            config = TTSConfig.create(**dict(config))
        msgs = coerce_messages(messages)
        spec = get_strategy(config.tts_strategy)
        config = _apply_budget(spec, config)
        scorer_name = _resolve_scorer(spec, config.tts_scorer)
        if spec.continues_steps and not self.backend.capabilities.continuation:
            raise CapabilityError(
                f"continuation: {spec.name} extends partial answers step by step and {self.backend.name} cannot "
                "continue an assistant message here; use self_consistency or offline_bon, or a server with a "
                "token-level API (vLLM, SGLang)"
            )
        prompt_ids = self.backend.render_chat(msgs)
        check_prompts_fit([prompt_ids], self.backend.max_context_tokens)
        return _Plan(msgs, spec, config, scorer_name, tuple(prompt_ids))

    def _scorer(self, name: str) -> Scorer:
        with self._scorers_lock:
            if name not in self._scorers:
                scorer = create_scorer(name, ScorerContext(self.backend, self.prm_model))
                _check_capabilities(scorer, self.backend)
                self._scorers[name] = scorer
            return self._scorers[name]

    def _metadata(
        self, plan: _Plan, ctx: StrategyContext, outcome: StrategyOutcome, prompt: int, total_s: float
    ) -> TTSMetadata:
        chosen, voted = outcome.selected, outcome.vote
        consensus = None if voted is None else voted.consensus
        completion = ctx.completion_tokens
        return TTSMetadata(
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
                    text=b.text,
                    answer=b.answer,
                    score=b.score,
                    step_scores=b.step_scores,
                    status=b.status,
                    num_tokens=b.num_tokens,
                    finish_reason=b.finish_reason,
                    truncated_steps=b.truncated_steps,
                )
                for b in outcome.candidates
            ],
            usage=UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
            timings=TimingInfo(generation_s=ctx.generation_s, scoring_s=ctx.scoring_s, total_s=total_s),
            backend=self.backend.name,
            model=self.backend.model_name,
        )


@dataclass(frozen=True)
class _Plan:
    messages: list[ChatMessage]
    spec: StrategySpec
    config: TTSConfig  # with tts_budget applied
    scorer_name: str
    prompt_ids: tuple[int, ...]


def _apply_budget(spec: StrategySpec, config: TTSConfig) -> TTSConfig:
    """``tts_budget`` overrides the strategy's main size; that size must be within its cap."""
    if config.tts_budget is not None:
        if config.tts_budget > spec.size_cap:
            raise InvalidParameterError(
                "tts_budget", config.tts_budget, f"must be <= {spec.size_cap} for {spec.name} (it sets {spec.size_field})"
            )
        config = config.model_copy(update={spec.size_field: config.tts_budget})
    size = getattr(config, spec.size_field)
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
            "tts_scorer", name, f"{VOTING_SCORER} only works with self_consistency; {spec.name} needs one of: {step_scorers}"
        )
    return name


def _check_capabilities(scorer: Scorer, backend: Backend) -> None:
    """A scorer the backend cannot feed is refused before anything is generated."""
    caps = backend.capabilities
    if scorer.needs_logprobs and not caps.logprobs:
        raise CapabilityError(f"scorer {scorer.name!r} needs token logprobs, which backend {backend.name!r} cannot return")
    if scorer.top_logprobs_needed > caps.max_top_logprobs:
        raise CapabilityError(
            f"scorer {scorer.name!r} needs top_logprobs={scorer.top_logprobs_needed} but backend {backend.name!r} "
            f"returns at most {caps.max_top_logprobs}"
        )
