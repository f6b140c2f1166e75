"""What every strategy shares: the registry, the run context and the beam record.

A strategy is a function ``run(ctx) -> StrategyOutcome``. :class:`StrategyContext` gives it the
only three things it may do with the outside world, each timed and counted: ``generate`` (one
backend call), ``score`` (one scorer call for a batch of beams) and ``report`` (a progress event
plus the cancellation/deadline check). Strategies never know the backend or the scorer's type.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

from llm_tts.answers import Vote, extract_answer, has_final_answer, vote
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
from llm_tts.config import STRATEGY_FIELDS, StrategyField, TTSConfig
from llm_tts.errors import UnknownNameError
from llm_tts.events import ProgressCallback, ProgressEvent
from llm_tts.metadata import CodeExecutionInfo, StoppedBy
from llm_tts.progress import RunControl
from llm_tts.reasoning import BudgetForcing, ThinkingReader, ThinkingSplit
from llm_tts.scorers.aggregation import aggregate
from llm_tts.scorers.base import Scorer, ScoreRequest
from llm_tts.tir.loop import Grown, Origin, ToolLoop, text_after_outputs
from llm_tts.tir.steps import trajectory_steps, whole_steps
from llm_tts.types import Segment, Step, Trajectory

_POLL_S = 0.05  # how often a running backend call checks cancellation and the deadline
VOTING_SCORER = "majority_vote"  # not a Scorer object: self_consistency's vote itself
Status = Literal["selected", "kept", "pruned"]
# Backend capabilities a strategy can require: continuing partial answers, top-k logprobs.
Requirement = Literal["continuation", "top_logprobs"]


@dataclass
class Beam:
    """One candidate: its trajectory, its steps and their scores, and how it ended."""

    trajectory: Trajectory
    steps: list[Step] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    score: float | None = None  # aggregated step scores (None: not scored)
    finished: bool = False  # cannot or need not be continued
    finish_reason: Literal["stop", "length"] = "stop"  # OpenAI meaning: "length" = cut by a limit
    truncated_steps: int = 0  # steps cut by tts_step_max_tokens (marked, not silently cut)
    status: Status = "kept"
    resampled: int = 0  # particle_filtering: draws this lineage received at resampling
    executions: list[CodeExecutionInfo] = field(default_factory=list)  # code_execution: blocks along it
    reader: ThinkingReader | None = None  # reasoning models: tells the thinking from the answer
    # the last split and the trajectory it is of: a beam is read many times between extensions
    split_cache: tuple[Trajectory, ThinkingSplit] | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return self.trajectory.text

    @property
    def answer(self) -> str | None:
        # A text cut by a limit never reached its conclusion: only an answer it stated counts,
        # not the last number it happened to write ("the sum of the sum of 7").
        if self.finish_reason == "length" and not has_final_answer(self.answer_text):
            return None
        if not self.thinking_finished:
            return None  # it ended inside its thinking: no answer, whatever numbers it wrote there
        return extract_answer(self.answer_text)

    @property
    def answer_text(self) -> str:
        """Where the answer is: the answer part (never the thinking), after the last injected output."""
        tail = text_after_outputs(self.trajectory.segments)
        split = self.thinking_split
        if split is None or not split.has_thinking:
            return tail
        return tail if len(tail) < len(split.answer) else split.answer

    @property
    def thinking_split(self) -> ThinkingSplit | None:
        """The completion split into thinking and answer (None: thinking is not parsed)."""
        if self.reader is None:
            return None
        if self.split_cache is None or self.split_cache[0] is not self.trajectory:
            self.split_cache = (self.trajectory, self.reader.split(self.text))
        return self.split_cache[1]

    @property
    def thinking_finished(self) -> bool:
        """False while (or when) the completion is inside its thinking."""
        split = self.thinking_split
        return split is None or split.finished

    @property
    def num_tokens(self) -> int:
        return self.trajectory.num_completion_tokens

    @property
    def aborted(self) -> bool:
        """Its last segment was stopped mid-generation (a stopping rule, the budget, the deadline)."""
        return self.trajectory.finish_reason == "abort"


class SearchStopped(Exception):
    """Raised inside a run when it must end now (the token budget is spent): the engine returns the
    best answer among the candidates seen so far (:meth:`StrategyContext.anytime_outcome`)."""


@dataclass
class StrategyOutcome:
    candidates: list[Beam]  # every candidate considered; exactly one has status "selected"
    selected: Beam
    vote: Vote | None = None  # voting strategies (self_consistency, weighted best-of-N)


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
        tools: ToolLoop | None = None,
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
        # Decided once: a backend that can submit lets a running call be stopped (see generate).
        self._submit = backend.submit if isinstance(backend, SubmittingBackend) else None
        # -- adaptive compute --
        self.stopped_by: StoppedBy | None = None  # set when a rule, the budget or the deadline ends the run early
        self._watch = backend.generate_watched if isinstance(backend, WatchingBackend) else None
        self._seen: list[Beam] = []  # every candidate made, for an anytime answer
        self._parents: set[int] = set()  # ids of candidates that were extended (not leaves)
        self.tools = tools  # code_execution: generation runs the model's code blocks (llm_tts.tir)
        self.reasoning = reasoning
        self.forcing = _forcing(config, reasoning, backend)  # tts_thinking_budget: caps each one's thinking

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
            if watcher is not None or c.tts_token_budget is not None or c.tts_anytime:
                out = self._generate_watched(prompts, params, watcher)
            elif self._submit is not None:
                out = self._await(self._submit(prompts, params))
            else:
                out = self.backend.generate(prompts, params)
        finally:
            self.generation_s += time.perf_counter() - start
        self.generate_calls += 1
        self.completion_tokens += sum(len(s) for row in out for s in row)
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
        c = self.config
        if self.tools is not None:  # planning refused watchers with code execution (StrategySpec.code_execution)
            beams = self._tool_full(n) if self.forcing is None else self._tool_forced(n)
        elif self.forcing is not None:
            # a watcher (deepconf's bar, tts_stop_confidence's vote) watches the thinking call
            thinking = partial(self.generate, watcher=watcher, top_logprobs=top_logprobs)
            answer = partial(self.generate, top_logprobs=top_logprobs)
            grown = self.forcing.grow(
                Trajectory(self.prompt_ids), n, c.max_tokens, c.stop or (), thinking, self._fit, answer=answer
            )
            beams = [self._forced_beam(segments) for segments in grown]
        else:
            (row,) = self.generate(
                [self.prompt_ids], n, c.max_tokens, c.stop or (), watcher=watcher, top_logprobs=top_logprobs
            )
            beams = [self.full_beam(seg) for seg in row]
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

    def _forced_beam(self, segments: tuple[Segment, ...]) -> Beam:
        last = next(s for s in reversed(segments) if s.is_model)
        return Beam(
            Trajectory(self.prompt_ids, segments),
            [step for seg in segments if seg.is_model for step in self.split(seg)],
            finished=True,
            finish_reason="length" if last.finish_reason in ("length", "abort") else "stop",
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
        c = self.config
        left = [c.max_tokens - b.num_tokens for b in beams]
        if self.tools is not None:
            children = self._tool_expand(beams, n, [min(c.tts_step_max_tokens, x) for x in left])
        else:
            if self.forcing is not None:  # a step never thinks past the budget
                room = [self.forcing.thinking_left(b.trajectory) for b in beams]
                left = [x if r is None else min(x, r) for x, r in zip(left, room)]
            rows = self.generate(
                [b.trajectory.token_ids for b in beams], n, min(c.tts_step_max_tokens, max(left)), self.step_stops
            )
            children = [
                self._child(beam, _cut(seg, budget, self.backend))
                for beam, budget, row in zip(beams, left, rows)
                for seg in row
            ]
        if self.forcing is not None:
            children = [self._close_thinking(child, beams[i // n]) for i, child in enumerate(children)]
        self._parents.update(id(b) for b in beams)
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

    def _child(self, beam: Beam, seg: Segment, grown: Grown | None = None) -> Beam:
        # grown (code_execution): the step's segments and blocks; seg is its last model segment
        traj = beam.trajectory.extend(*(grown.segments if grown else (seg,)))
        child = replace(
            beam,
            trajectory=traj,
            steps=[*beam.steps, whole_steps(grown.segments) if grown else Step(seg, 0, len(seg), seg.text)],
            step_scores=list(beam.step_scores),
            score=None,
            executions=[*beam.executions, *(grown.executions if grown else ())],
            reader=self.reasoning,
        )
        user_stop = seg.finish_reason == "stop" and seg.stop_text not in self.step_delimiters
        if grown is not None and not grown.segments[-1].is_model:
            user_stop = False  # out of budget right after an output: not an ending the model chose
        out_of_room = (
            traj.num_completion_tokens >= self.config.max_tokens
            or len(traj.token_ids) >= self.backend.max_context_tokens - 1
        )
        stated = child.answer_text if self.reasoning is not None else grown.answer_text if grown else seg.text
        if seg.finish_reason == "eos" or user_stop or has_final_answer(stated):
            child.finished, child.finish_reason = True, "stop"
        elif out_of_room or seg.finish_reason == "abort":
            child.finished, child.finish_reason = True, "length"
        elif seg.finish_reason == "length":  # hit tts_step_max_tokens: continue, but mark it
            child.truncated_steps += 1
        return child

    # -- code execution (tool-integrated reasoning) --------------------------------------
    def _tool_full(self, n: int) -> list[Beam]:
        """``n`` whole TIR trajectories: each runs its code blocks as it goes (see llm_tts.tir.loop)."""
        assert self.tools is not None
        c = self.config
        (row,) = self.tools.grow(
            [Origin(Trajectory(self.prompt_ids))], n, [c.max_tokens], c.stop or (), self.generate, self._fit
        )
        return [self._tool_beam(g) for g in row]

    def _tool_beam(self, g: Grown) -> Beam:
        """A whole TIR trajectory as a finished candidate."""
        assert self.tools is not None
        return Beam(
            Trajectory(self.prompt_ids, g.segments),
            trajectory_steps(g.segments, self.split, self.tools.settings),
            finished=True,
            finish_reason="length" if g.finish_reason == "length" else "stop",
            executions=list(g.executions),
            reader=self.reasoning,
        )

    def _tool_forced(self, n: int) -> list[Beam]:
        """``n`` whole TIR trajectories under budget forcing: the thinking (code blocks run as it goes)
        stops at the budget or the end marker, then every sample that answers on continues, in one batch."""
        assert self.tools is not None and self.forcing is not None
        c, forcing, prompt = self.config, self.forcing, Trajectory(self.prompt_ids)
        first = min(c.max_tokens, forcing.budget)
        stops = (*(c.stop or ()), forcing.end_marker)
        (row,) = self.tools.grow([Origin(prompt)], n, [first], stops, self.generate, self._fit)
        settled = [forcing.settle(prompt, g.segments, first) for g in row]
        grown = [Grown(segments, g.executions) for (segments, _), g in zip(settled, row)]
        todo = [i for i, (s, go) in enumerate(settled) if go and sum(map(len, s)) < c.max_tokens]
        if todo:
            origins = [Origin(prompt.extend(*grown[i].segments), grown[i].executions) for i in todo]
            budgets = [c.max_tokens - sum(map(len, grown[i].segments)) for i in todo]
            more = self.tools.grow(origins, 1, budgets, c.stop or (), self.generate, self._fit)
            for i, (g,) in zip(todo, more):
                grown[i] = Grown((*grown[i].segments, *g.segments), (*grown[i].executions, *g.executions))
        return [self._tool_beam(g) for g in grown]

    def _tool_expand(self, beams: Sequence[Beam], n: int, budgets: list[int]) -> list[Beam]:
        """Every beam's next step, ``n`` each, a code block and its output inside the step."""
        assert self.tools is not None
        rows = self.tools.grow(
            [Origin(b.trajectory, b.executions) for b in beams],
            n,
            budgets,
            self.step_stops,
            self.generate,
            self._fit,
            step_delimiter=self.config.tts_step_delimiter,
        )
        return [self._child(beam, g.last_model, g) for beam, row in zip(beams, rows) for g in row]

    def _fit(self, seg: Segment, budget: int) -> Segment:
        return _cut(seg, max(0, budget), self.backend)

    # -- scoring --------------------------------------------------------------------------
    def score(self, beams: Sequence[Beam]) -> None:
        """Score the unscored steps of ``beams`` in ONE scorer call and aggregate them."""
        if self.scorer is None or not beams:
            return
        requests = [ScoreRequest(self.question, b.steps, len(b.step_scores)) for b in beams]
        start = time.perf_counter()
        new = self.scorer.score(requests)
        self.scoring_s += time.perf_counter() - start
        for beam, scores in zip(beams, new):
            beam.step_scores.extend(float(s) for s in scores)
            beam.score = aggregate(beam.step_scores, self.config.tts_score_aggregation, self.config.tts_window_size)

    def split(self, seg: Segment) -> list[Step]:
        """A one-shot trajectory's steps, split at the delimiter on token boundaries."""
        return _split(seg, self.backend, self.step_delimiters)

    # -- progress -------------------------------------------------------------------------
    def report(self, step: int, live: int, finished: int, best: float | None, message: str = "") -> None:
        """Emit a progress event, then honour cancellation and the deadline."""
        if self._progress is not None:
            self._progress(ProgressEvent(self.name, step, live, finished, best, message))
        if live and step >= self.config.tts_max_steps and self.stopped_by is None:
            self.stopped_by = "max_steps"  # the search's last step left candidates unfinished
        self.control.check()

    # -- adaptive compute --------------------------------------------------------
    def stop(self, reason: StoppedBy, message: str) -> None:
        """Record why the run ends early (the first reason stands) and report it at once."""
        if self.stopped_by is not None and self.stopped_by != "max_steps":
            return
        self.stopped_by = reason
        if self._progress is not None:
            finished = sum(b.finished for b in self._seen)
            live = sum(not b.finished for b in self._seen if id(b) not in self._parents)
            self._progress(ProgressEvent(self.name, 0, live, finished, None, message, stopped_by=reason))

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
        chosen, picked = select_finished(pool, self.config.tts_selection)
        return StrategyOutcome([*pool, *rest], chosen, picked)


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
    from llm_tts.types import split_steps

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


def _rank(score: float | None) -> float:
    return -math.inf if score is None else score  # unscored ranks last


def score_key(beam: Beam) -> float:
    """A beam's score for ranking: unscored beams rank last."""
    return _rank(beam.score)


def best_index(scores: Sequence[float | None]) -> int:
    """Index of the highest score; the first one on a tie (None ranks last)."""
    return max(range(len(scores)), key=lambda i: (_rank(scores[i]), -i))


def best_of(beams: Sequence[Beam]) -> Beam:
    """The highest-scoring beam; the first one on a tie (unscored beams rank last)."""
    return beams[best_index([b.score for b in beams])]


def select_index(
    answers: Sequence[str | None], scores: Sequence[float | None], selection: Literal["best", "weighted"]
) -> tuple[int, Vote | None]:
    """The candidate ``tts_selection`` picks: the best score, or the best candidate of the heaviest
    answer when scores are summed per equivalent answer (with that vote). ``llm-tts rescore``
    applies it to recorded candidates, so a re-score with the run's settings makes the run's choice."""
    if selection == "weighted":
        result = vote(answers, scores, weighted=True)
        return result.selected, result
    return best_index(scores), None


def select_finished(beams: Sequence[Beam], selection: Literal["best", "weighted"]) -> tuple[Beam, Vote | None]:
    """The beam to return by ``tts_selection`` (:func:`select_index`), marked "selected"."""
    index, result = select_index([b.answer for b in beams], [b.score for b in beams], selection)
    chosen = beams[index]
    chosen.status = "selected"
    return chosen, result


def mean_logprob(beam: Beam) -> float | None:
    """Mean token log-probability of a beam's model tokens (free: the backend returned them)."""
    lps = [lp for seg in beam.trajectory.segments if seg.is_model and seg.logprobs for lp in seg.logprobs]
    return sum(lps) / len(lps) if lps else None


def best_score(beams: Sequence[Beam]) -> float | None:
    scores = [b.score for b in beams if b.score is not None]
    return max(scores) if scores else None


def dedupe(beams: Sequence[Beam]) -> list[Beam]:
    """Drop beams whose completion token ids repeat an earlier beam's (first one kept)."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for b in beams:
        key = b.trajectory.completion_token_ids
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out


# -- registry ---------------------------------------------------------------------------------
StrategyFn = Callable[[StrategyContext], StrategyOutcome]


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: how to run it and what it takes, needs and combines with.

    ``fields``: the strategy-owned config fields it reads (:data:`~llm_tts.config.StrategyField`);
    ``requires``: backend capabilities it cannot run without; ``code_execution``: whether its paths
    can run code (a strategy that watches each path as one sampled segment cannot). Planning derives
    every cross-check from these (:func:`llm_tts.engine.resolve_config` and ``TTSEngine.plan``).
    """

    name: str
    run: StrategyFn
    size_field: StrategyField  # the TTSConfig field tts_budget maps onto
    size_cap: int  # the largest value allowed for that field
    fields: frozenset[StrategyField]
    needs_scorer: bool  # False: the vote decides, a scorer only breaks ties
    requires: frozenset[Requirement] = frozenset()
    code_execution: bool = True
    budget_unit: StrategyField | None = None  # tts_budget is divided by this field to give size_field (dvts)

    def size(self, config: TTSConfig) -> int:
        value: int = getattr(config, self.size_field)  # a StrategyField: checked against TTSConfig by a test
        return value

    def size_for_budget(self, config: TTSConfig, budget: int) -> int:
        """The main size ``tts_budget`` sets: the budget itself, or budget / unit (at least 1)."""
        return budget if self.budget_unit is None else max(1, budget // getattr(config, self.budget_unit))

    @property
    def continues_steps(self) -> bool:
        return "continuation" in self.requires

    @property
    def default_scorer(self) -> str:
        return "entropy" if self.needs_scorer else VOTING_SCORER


_STRATEGIES: dict[str, StrategySpec] = {}


def register_strategy(
    name: str,
    *,
    size_field: StrategyField,
    size_cap: int,
    fields: Sequence[StrategyField],
    needs_scorer: bool = True,
    requires: Sequence[Requirement] = (),
    code_execution: bool = True,
    budget_unit: StrategyField | None = None,
) -> Callable[[StrategyFn], StrategyFn]:
    """Register ``run`` under ``name`` with what it takes (``fields``, which include ``size_field``
    and ``budget_unit``), needs and combines with: see :class:`StrategySpec`."""

    def deco(fn: StrategyFn) -> StrategyFn:
        taken = frozenset(fields) | {size_field} | ({budget_unit} if budget_unit else set())
        _STRATEGIES[name] = StrategySpec(
            name, fn, size_field, size_cap, taken, needs_scorer, frozenset(requires), code_execution, budget_unit
        )
        return fn

    return deco


def fields_for(strategy: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` less the strategy-owned ones ``strategy`` does not take: one set of sizes shared
    by a sweep over strategies (an unknown strategy keeps them all; its name is refused later)."""
    spec = _STRATEGIES.get(strategy)
    if spec is None:
        return dict(fields)
    return {k: v for k, v in fields.items() if k not in STRATEGY_FIELDS or k in spec.fields}


def strategies_taking(field: str) -> list[str]:
    """The registered strategies that take ``field`` (sorted)."""
    return sorted(name for name, spec in _STRATEGIES.items() if field in spec.fields)


def strategy_names() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> StrategySpec:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UnknownNameError("strategy", name, strategy_names(), param="tts_strategy") from None
