"""The run context every strategy works through, and how its samples are grown.

A strategy is a function ``run(ctx) -> StrategyOutcome``. :class:`StrategyContext` gives it the
only three things it may do with the outside world, each timed and counted: ``generate`` (one
backend call), ``score`` (one scorer call for a batch of beams) and ``report`` (a progress event
plus the cancellation/deadline check). Strategies never know the backend or the scorer's type.
Whole trajectories and steps are grown by the context's :class:`Sampler`, chosen once when the
context is built: :class:`PlainSampler`, or the code-execution one
(:mod:`llm_tts.strategies.code_sampling`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

from llm_tts.answers import Vote, has_final_answer, vote
from llm_tts.backends.base import (
    Backend,
    SampleUpdate,
    SamplingParams,
    SubmittingBackend,
    Watcher,
    WatchingBackend,
    WatchVerdict,
)
from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.backends.cost import RunCost
from llm_tts.backends.usage import metered
from llm_tts.config import TTSConfig
from llm_tts.events import ProgressCallback, ProgressEvent
from llm_tts.metadata import CodeExecutionInfo, RouteInfo, SelectionInfo, StoppedBy
from llm_tts.progress import RunControl
from llm_tts.reasoning import BudgetForcing, ThinkingReader
from llm_tts.scorers.aggregation import aggregate
from llm_tts.scorers.base import Scorer, ScoreRequest
from llm_tts.selection import load_selector
from llm_tts.spans import NO_SPAN, Span, open_span, span
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.genselect import genselect
from llm_tts.strategies.ranking import mean_logprob, select_finished
from llm_tts.strategies.tracing import NO_TRACE, RunTracer, Tracer
from llm_tts.types import Segment, Step, Trajectory, split_steps, text_after_injected

_POLL_S = 0.05  # how often a running backend call checks cancellation and the deadline


class SearchStopped(Exception):
    """Raised inside a run when it must end now (the token budget is spent): the engine returns the
    best answer among the candidates seen so far (:meth:`StrategyContext.anytime_outcome`)."""


@dataclass
class StrategyOutcome:
    candidates: list[Beam]  # every candidate considered; exactly one has status "selected"
    selected: Beam
    vote: Vote | None = None  # voting strategies (self_consistency, weighted best-of-N)


class Sampler(Protocol):
    """How a context grows samples: whole trajectories and next steps, through its ``generate``."""

    def sample_full(
        self, ctx: StrategyContext, n: int, watcher: Watcher | None, top_logprobs: int | None
    ) -> list[Beam]:
        """``n`` whole trajectories, finished (see :meth:`StrategyContext.sample_full`)."""
        ...

    def expand(self, ctx: StrategyContext, beams: Sequence[Beam], n: int) -> list[Beam]:
        """Every beam's next step, ``n`` each (see :meth:`StrategyContext.expand`)."""
        ...


class StrategyContext:
    """One run's world: config, prompt, backend, scorer, progress, usage and timings."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        scorer: Scorer | None,
        config: TTSConfig,
        prompt_ids: Sequence[int],
        question: str,
        progress: ProgressCallback | None = None,
        control: RunControl | None = None,
        sampler: Sampler | None = None,  # code_execution: a CodeExecutionSampler (default: plain sampling)
        constraint: DecodingConstraint | None = None,  # structured output: every sample is decoded under it
        reasoning: ThinkingReader | None = None,  # reasoning models: how thinking is told from the answer
    ) -> None:
        self.name = name
        self.constraint = constraint
        self.backend = backend
        self.scorer = scorer
        self.config = config
        self.prompt_ids = tuple(prompt_ids)
        self.question = question
        self._progress = progress
        self.control = control or RunControl()
        self.completion_tokens = 0  # every generated token, pruned candidates included
        self.generation_s = 0.0
        self.scoring_s = 0.0
        self.generate_calls = 0
        self.cost = RunCost()  # prompt tokens processed and cached, scorer tokens (see llm_tts.backends.cost)
        self._step_span: Span = NO_SPAN  # open from a step's first call to its progress report
        # Decided once: a backend that can submit lets a running call be stopped (see generate).
        self._submit = backend.submit if isinstance(backend, SubmittingBackend) else None
        # -- adaptive compute --
        self.stopped_by: StoppedBy | None = None  # set when a rule, the budget or the deadline ends the run early
        self._watch = backend.generate_watched if isinstance(backend, WatchingBackend) else None
        self._seen: list[Beam] = []  # every candidate made, for an anytime answer
        self._parents: set[int] = set()  # ids of candidates that were extended (not leaves)
        self.sampler = sampler if sampler is not None else PlainSampler()
        self.reasoning = reasoning
        self.forcing = _forcing(config, reasoning, backend)  # tts_thinking_budget: caps each one's thinking
        # tts_selector: a fitted selector chooses the answer; its P(right) is the run's confidence
        self.selector = None if config.tts_selector is None else load_selector(config.tts_selector)
        self.confidence: float | None = None
        # tts_trace: every node and event of the run is recorded (otherwise the hooks do nothing)
        self.trace: Tracer = RunTracer(question, backend.token_texts) if config.tts_trace else NO_TRACE
        self.selection_info: SelectionInfo | None = None  # tts_genselect: how the model picked
        self.route_info: RouteInfo | None = None  # tts_route: the sizes that ran

    # -- generation -----------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        max_tokens: int,
        stop: Sequence[str],
        *,
        watcher: Watcher | None = None,
        top_logprobs: int | None = None,
    ) -> list[list[Segment]]:
        """One backend call. Seeds differ per call (seed + call index) so steps are not clones.

        On a backend that can submit (vLLM), cancellation and the deadline also stop the call
        while it runs: its requests are aborted in the engine, not left to finish. With a
        ``watcher``, ``tts_token_budget`` or ``tts_anytime``, the call is watched token by token
        (:class:`~llm_tts.backends.base.WatchingBackend`; a backend that cannot be watched shows
        the watcher each sample once it is done): the budget and the deadline abort it as they
        are reached, and ``watcher`` may abort samples. ``top_logprobs`` overrides the scorer's.
        A run whose budget is spent raises :class:`SearchStopped` at its next call.
        """
        self.control.check()
        c = self.config
        if c.tts_token_budget is not None and self.completion_tokens >= c.tts_token_budget:
            self.stop("budget", f"token budget {c.tts_token_budget} spent")
            raise SearchStopped("budget")
        params = SamplingParams(
            n=n,
            temperature=c.temperature,
            top_p=c.top_p,
            max_tokens=max_tokens,
            stop=tuple(stop),
            seed=None if c.seed is None else c.seed + self.generate_calls,
            logprobs=self.backend.capabilities.logprobs,
            top_logprobs=max(
                top_logprobs if top_logprobs is not None else self.scorer.top_logprobs_needed if self.scorer else 0,
                c.top_logprobs or 0,
            ),
            presence_penalty=c.presence_penalty,
            frequency_penalty=c.frequency_penalty,
            constraint=self.constraint,
        )
        start = time.perf_counter()
        try:
            out = self._call_backend(prompts, params, watcher)
        finally:
            elapsed = time.perf_counter() - start
            self.generation_s += elapsed
        self.generate_calls += 1
        tokens = sum(len(s) for row in out for s in row)
        self.completion_tokens += tokens
        self.trace.sampled(len(prompts), n, max_tokens, tokens, elapsed)
        return out

    def _call_backend(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher | None
    ) -> list[list[Segment]]:
        """The backend call of :meth:`generate`, in its span, its prompt tokens added to the cost."""
        c = self.config
        self._open_step_span()
        attributes = {
            "llm_tts.prompts": len(prompts),
            "llm_tts.samples": params.n,
            "gen_ai.request.max_tokens": params.max_tokens,
        }
        with span("llm_tts.generate", attributes) as call, metered() as usage:
            if watcher is not None or c.tts_token_budget is not None or c.tts_anytime:
                out = self._generate_watched(prompts, params, watcher)
            elif self._submit is not None:
                out = self._await(self._submit(prompts, params))
            else:
                out = self.backend.generate(prompts, params)
            self.cost.add_generation(usage, prompts)
            call.set(
                {
                    "gen_ai.usage.input_tokens": usage.prompt_tokens if usage.requests else None,
                    "gen_ai.usage.output_tokens": sum(len(s) for row in out for s in row),
                    "llm_tts.cached_tokens": usage.cached_tokens,
                }
            )
        return out

    def _generate_watched(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher | None
    ) -> list[list[Segment]]:
        """One call watched by the run itself (cancellation, deadline, budget) and by ``watcher``."""
        budget, spent = self.config.tts_token_budget, self.completion_tokens

        def watch(update: SampleUpdate) -> WatchVerdict:
            nonlocal spent
            spent += update.new_tokens
            if self.control.past_deadline() and self.config.tts_anytime and not self.control.cancelled.is_set():
                self.stop("deadline", "deadline reached: answering with the best so far")
                return "abort_all"
            self.control.check()  # cancelled, or past the deadline without tts_anytime: raise
            if budget is not None and spent >= budget:
                self.stop("budget", f"token budget {budget} reached: running samples aborted")
                return "abort_all"
            return watcher(update) if watcher is not None else "continue"

        if self._watch is not None:
            return self._watch(prompts, params, watch)
        out = self.backend.generate(prompts, params)  # cannot be watched: show each sample once it is done
        for i, row in enumerate(out):
            for j, seg in enumerate(row):
                watch(SampleUpdate(i, j, seg.token_ids, seg.logprobs, seg.top_logprobs, len(seg), seg))
        return out

    def _await(self, futures: Sequence[Future[list[Segment]]]) -> list[list[Segment]]:
        """The futures' results, checking cancellation and the deadline while waiting; on
        either (or any error) the requests still running are cancelled."""
        try:
            while futures_wait(futures, timeout=_POLL_S).not_done:
                self.control.check()
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def sample_full(self, n: int, *, watcher: Watcher | None = None, top_logprobs: int | None = None) -> list[Beam]:
        """``n`` whole trajectories from ONE backend call, split into steps at the delimiter
        (``watcher`` and ``top_logprobs`` as in :meth:`generate`)."""
        beams = self.sampler.sample_full(self, n, watcher, top_logprobs)
        self.trace.made(None, beams)
        self._seen += beams
        return beams

    def full_beam(self, seg: Segment) -> Beam:
        """A whole trajectory made of one sampled segment (an aborted one ended by a limit)."""
        return Beam(
            Trajectory(self.prompt_ids, (seg,)),
            self.split(seg),
            finished=True,
            finish_reason="length" if seg.finish_reason in ("length", "abort") else "stop",
            reader=self.reasoning,
        )

    @property
    def step_stops(self) -> tuple[str, ...]:
        return (*self.step_delimiters, *(self.config.stop or ()))

    @property
    def step_delimiters(self) -> tuple[str, ...]:
        """What ends a step: the delimiter, and for a reasoning model also the end of the thinking
        and the thinking's own delimiter (a step ends there; the next one is the answer's)."""
        return step_delimiters(self.config, self.reasoning)

    def expand(self, beams: Sequence[Beam], n: int) -> list[Beam]:
        """Every beam's next step, ``n`` candidates each, in ONE backend call.

        A step stops at the delimiter or ``tts_step_max_tokens``; a trajectory never exceeds
        ``max_tokens`` (a step that would is cut there and the beam finishes with "length").
        """
        children = self.sampler.expand(self, beams, n)
        if self.forcing is not None:
            children = [self._close_thinking(child, beams[i // n]) for i, child in enumerate(children)]
        self._parents.update(id(b) for b in beams)
        self.trace.made(beams, children)
        self._seen += children
        return children

    def _close_thinking(self, child: Beam, parent: Beam) -> Beam:
        """Budget forcing in a step search: a child whose thinking used the budget gets the end marker
        injected, and its next step is its answer (a step cut at the budget is not marked truncated)."""
        assert self.forcing is not None
        if (child.finished and child.finish_reason == "stop") or not self.forcing.must_close(child.trajectory):
            return child
        closing = self.forcing.closing()
        child.trajectory = child.trajectory.extend(closing)
        child.truncated_steps = parent.truncated_steps
        room = child.trajectory.num_completion_tokens < self.config.max_tokens
        child.finished, child.finish_reason = (False, "stop") if room else (True, "length")
        return child

    def child(
        self, beam: Beam, segments: Sequence[Segment], step: Step, executions: Sequence[CodeExecutionInfo] = ()
    ) -> Beam:
        """``beam`` grown by one step: ``segments`` (the model's, with any code output injected
        between them) making ``step``, and whether that step ends it."""
        seg = next(s for s in reversed(segments) if s.is_model)
        traj = beam.trajectory.extend(*segments)
        child = replace(
            beam,
            trajectory=traj,
            steps=[*beam.steps, step],
            step_scores=list(beam.step_scores),
            score=None,
            executions=[*beam.executions, *executions],
            reader=self.reasoning,
        )
        user_stop = seg.finish_reason == "stop" and seg.stop_text not in self.step_delimiters
        if not segments[-1].is_model:
            user_stop = False  # out of budget right after an output: not an ending the model chose
        out_of_room = (
            traj.num_completion_tokens >= self.config.max_tokens
            or len(traj.token_ids) >= self.backend.max_context_tokens - 1
        )
        stated = child.answer_text if self.reasoning is not None else text_after_injected(segments)
        if seg.finish_reason == "eos" or user_stop or has_final_answer(stated):
            child.finished, child.finish_reason = True, "stop"
        elif out_of_room or seg.finish_reason == "abort":
            child.finished, child.finish_reason = True, "length"
        elif seg.finish_reason == "length":  # hit tts_step_max_tokens: continue, but mark it
            child.truncated_steps += 1
        return child

    def fit(self, seg: Segment, budget: int) -> Segment:
        """``seg`` cut to ``budget`` tokens (none below zero), marked "length" when cut."""
        return _cut(seg, max(0, budget), self.backend)

    # -- scoring --------------------------------------------------------------------------
    def score(self, beams: Sequence[Beam]) -> None:
        """Score the unscored steps of ``beams`` in ONE scorer call and aggregate them."""
        if self.scorer is None or not beams:
            return
        requests = [ScoreRequest(self.question, b.steps, len(b.step_scores)) for b in beams]
        start = time.perf_counter()
        self._open_step_span()
        with span("llm_tts.score", {"llm_tts.scorer": self.scorer.name, "llm_tts.requests": len(requests)}) as call:
            with metered(outside_run=True) as usage:  # the scorer's tokens are not the run's prompt
                new = self.scorer.score(requests)
            self.cost.add_scoring(usage)
            call.set({"llm_tts.scorer_tokens": usage.prompt_tokens + usage.completion_tokens})
        elapsed = time.perf_counter() - start
        self.scoring_s += elapsed
        for beam, scores in zip(beams, new):
            beam.step_scores.extend(float(s) for s in scores)
            beam.score = aggregate(beam.step_scores, self.config.tts_score_aggregation, self.config.tts_window_size)
        self.trace.scored(beams, elapsed)

    def split(self, seg: Segment) -> list[Step]:
        """A one-shot trajectory's steps, split at the delimiter on token boundaries."""
        return _split(seg, self.backend, self.step_delimiters)

    # -- progress -------------------------------------------------------------------------
    def report(self, step: int, live: int, finished: int, best: float | None, message: str = "") -> None:
        """Emit a progress event, then honour cancellation and the deadline."""
        if self._progress is not None:
            self._progress(ProgressEvent(self.name, step, live, finished, best, message))
        self.trace.reported(step, live, finished, best, message)
        if live and step >= self.config.tts_max_steps and self.stopped_by is None:
            self.stopped_by = "max_steps"  # the search's last step left candidates unfinished
        self._step_span.set(
            {"llm_tts.step": step, "llm_tts.live": live, "llm_tts.finished": finished, "llm_tts.best_score": best}
        )
        self.end_step_span()
        self.control.check()

    def _open_step_span(self) -> None:
        """A step's span starts at its first backend or scorer call (and ends at its report)."""
        if self._step_span is NO_SPAN:
            self._step_span = open_span("llm_tts.step", {"llm_tts.strategy": self.name})

    def end_step_span(self) -> None:
        """End the open step's span (a run that ends between reports ends it here)."""
        self._step_span.end()
        self._step_span = NO_SPAN

    # -- adaptive compute --------------------------------------------------------
    def stop(self, reason: StoppedBy, message: str) -> None:
        """Record why the run ends early (the first reason stands) and report it at once."""
        if self.stopped_by is not None and self.stopped_by != "max_steps":
            return
        self.stopped_by = reason
        self.trace.stopped(reason, message)
        if self._progress is not None:
            finished = sum(b.finished for b in self._seen)
            live = sum(not b.finished for b in self._seen if id(b) not in self._parents)
            self._progress(ProgressEvent(self.name, 0, live, finished, None, message, stopped_by=reason))

    def partial_candidates(self) -> list[Beam]:
        """The leaves made so far, read-only (a run cut short records them as its tokens so far)."""
        return [b for b in self._seen if id(b) not in self._parents]

    def anytime_outcome(self) -> StrategyOutcome | None:
        """The best answer among the candidates made so far (None: nothing was generated yet).

        Leaves (candidates never extended) compete: those with an answer that ran to their end,
        else all of them, unfinished ones marked "length". Without a scorer the vote decides (as
        in self_consistency), with one ``tts_selection`` over their scores.
        """
        leaves = [b for b in self._seen if id(b) not in self._parents]
        if not leaves:
            return None
        for b in leaves:
            if not b.finished:
                b.finished, b.finish_reason = True, "length"
            b.status = "kept"
        pool = [b for b in leaves if b.answer is not None and not b.aborted] or leaves
        rest = [b for b in leaves if b not in pool]
        for b in rest:
            b.status = "pruned"
        if self.scorer is None:
            result = vote([b.answer for b in pool], [mean_logprob(b) for b in pool])
            chosen: Beam = pool[result.selected]
            chosen.status = "selected"
            return StrategyOutcome([*pool, *rest], chosen, result)
        self.score(pool)
        chosen, picked = self.select(pool)
        return StrategyOutcome([*pool, *rest], chosen, picked)

    def select(self, beams: Sequence[Beam]) -> tuple[Beam, Vote | None]:
        """The finished candidate to return (marked "selected") and its vote: by ``tts_genselect``
        (the model picks), by ``tts_selector`` (its P(right) kept as :attr:`confidence`), else by
        ``tts_selection``."""
        if (picked := self.genselect(beams)) is not None:
            return picked
        chosen, result, self.confidence = select_finished(beams, self.config.tts_selection, self.selector)
        return chosen, result

    def genselect(self, beams: Sequence[Beam]) -> tuple[Beam, Vote] | None:
        """With ``tts_genselect``: the candidate the model picks (marked "selected") and the vote
        (:mod:`llm_tts.strategies.genselect`); None when it is off or has nothing to choose between."""
        picks = self.config.tts_genselect
        if picks is None:
            return None
        picked = genselect(beams, self.question, self.backend, picks, self.generate)
        if picked is None:
            return None
        chosen, result, self.selection_info = picked
        return chosen, result


class PlainSampler:
    """Samples as the model writes them: one backend call per batch (two under budget forcing)."""

    def sample_full(
        self, ctx: StrategyContext, n: int, watcher: Watcher | None, top_logprobs: int | None
    ) -> list[Beam]:
        c = ctx.config
        if ctx.forcing is None:
            (row,) = ctx.generate(
                [ctx.prompt_ids], n, c.max_tokens, c.stop or (), watcher=watcher, top_logprobs=top_logprobs
            )
            return [ctx.full_beam(seg) for seg in row]
        # a watcher (deepconf's bar, tts_stop_confidence's vote) watches the thinking call
        thinking = partial(ctx.generate, watcher=watcher, top_logprobs=top_logprobs)
        answer = partial(ctx.generate, top_logprobs=top_logprobs)
        grown = ctx.forcing.grow(
            Trajectory(ctx.prompt_ids), n, c.max_tokens, c.stop or (), thinking, ctx.fit, answer=answer
        )
        return [self._forced_beam(ctx, segments) for segments in grown]

    def _forced_beam(self, ctx: StrategyContext, segments: tuple[Segment, ...]) -> Beam:
        last = next(s for s in reversed(segments) if s.is_model)
        return Beam(
            Trajectory(ctx.prompt_ids, segments),
            [step for seg in segments if seg.is_model for step in ctx.split(seg)],
            finished=True,
            finish_reason="length" if last.finish_reason in ("length", "abort") else "stop",
            reader=ctx.reasoning,
        )

    def expand(self, ctx: StrategyContext, beams: Sequence[Beam], n: int) -> list[Beam]:
        c = ctx.config
        left = [c.max_tokens - b.num_tokens for b in beams]
        if ctx.forcing is not None:  # a step never thinks past the budget
            room = [ctx.forcing.thinking_left(b.trajectory) for b in beams]
            left = [x if r is None else min(x, r) for x, r in zip(left, room)]
        rows = ctx.generate(
            [b.trajectory.token_ids for b in beams], n, min(c.tts_step_max_tokens, max(left)), ctx.step_stops
        )
        children = []
        for beam, budget, row in zip(beams, left, rows):
            for seg in row:
                cut = _cut(seg, budget, ctx.backend)
                children.append(ctx.child(beam, (cut,), Step(cut, 0, len(cut), cut.text)))
        return children


def _forcing(config: TTSConfig, reader: ThinkingReader | None, backend: Backend) -> BudgetForcing | None:
    if config.tts_thinking_budget is None or reader is None or reader.end_marker is None:
        return None
    encode = getattr(backend, "encode", None)  # an EncodingBackend: TTSEngine.plan checked it
    if encode is None:
        return None
    return BudgetForcing(reader, config.tts_thinking_budget, config.tts_thinking_answer_cue, encode)


def step_delimiters(config: TTSConfig, reader: ThinkingReader | None) -> tuple[str, ...]:
    """The texts that end a step (see :attr:`StrategyContext.step_delimiters`)."""
    extra: tuple[str, ...] = () if reader is None or reader.end_marker is None else (reader.end_marker,)
    thinking = config.tts_thinking_step_delimiter
    if thinking is not None and thinking != config.tts_step_delimiter and extra:
        extra = (thinking, *extra)
    return (config.tts_step_delimiter, *extra)


def _split(seg: Segment, backend: Backend, delimiter: str | Sequence[str]) -> list[Step]:
    return split_steps(seg, backend.token_texts(seg.token_ids), delimiter, decode=backend.decode)


def _cut(seg: Segment, budget: int, backend: Backend) -> Segment:
    """Cut a segment to ``budget`` tokens (a trajectory's max_tokens), marked as "length"."""
    if len(seg) <= budget:
        return seg
    ids = seg.token_ids[:budget]
    return replace(
        seg,
        token_ids=ids,
        text=backend.decode(ids),
        logprobs=None if seg.logprobs is None else seg.logprobs[:budget],
        top_logprobs=None if seg.top_logprobs is None else seg.top_logprobs[:budget],
        finish_reason="length",
        stop_text=None,
    )
