"""Sampling with code execution: each sample runs its code blocks as it goes (:mod:`llm_tts.tir`).

The engine gives a request with ``code_execution`` a :class:`CodeExecutionSampler` when it builds
the run's context; every whole trajectory and every step then grows through the request's
:class:`~llm_tts.tir.CodeExecutionLoop`, a block and its output inside the step that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_tts.backends.base import Watcher
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.context import StrategyContext
from llm_tts.tir.loop import CodeExecutionLoop, Grown, Origin
from llm_tts.tir.steps import trajectory_steps, whole_steps
from llm_tts.types import Trajectory


class CodeExecutionSampler:
    """Grows samples through ``loop``: generate, run the closed block, inject its output, go on."""

    def __init__(self, loop: CodeExecutionLoop) -> None:
        self.loop = loop

    def sample_full(
        self, ctx: StrategyContext, n: int, watcher: Watcher | None, top_logprobs: int | None
    ) -> list[Beam]:
        # planning refused watchers with code execution (StrategySpec.code_execution)
        if ctx.forcing is not None:
            return self._forced(ctx, n)
        c = ctx.config
        (row,) = self.loop.grow(
            [Origin(Trajectory(ctx.prompt_ids))], n, [c.max_tokens], c.stop or (), ctx.generate, ctx.fit
        )
        return [self._beam(ctx, g) for g in row]

    def _forced(self, ctx: StrategyContext, n: int) -> list[Beam]:
        """``n`` whole trajectories under budget forcing: the thinking (code blocks run as it goes)
        stops at the budget or the end marker, then every sample that answers on continues, in one batch."""
        assert ctx.forcing is not None
        c, forcing, prompt = ctx.config, ctx.forcing, Trajectory(ctx.prompt_ids)
        first = min(c.max_tokens, forcing.budget)
        stops = (*(c.stop or ()), forcing.end_marker)
        (row,) = self.loop.grow([Origin(prompt)], n, [first], stops, ctx.generate, ctx.fit)
        settled = [forcing.settle(prompt, g.segments, first) for g in row]
        grown = [Grown(segments, g.executions) for (segments, _), g in zip(settled, row)]
        todo = [i for i, (s, go) in enumerate(settled) if go and sum(map(len, s)) < c.max_tokens]
        if todo:
            origins = [Origin(prompt.extend(*grown[i].segments), grown[i].executions) for i in todo]
            budgets = [c.max_tokens - sum(map(len, grown[i].segments)) for i in todo]
            more = self.loop.grow(origins, 1, budgets, c.stop or (), ctx.generate, ctx.fit)
            for i, (g,) in zip(todo, more):
                grown[i] = Grown((*grown[i].segments, *g.segments), (*grown[i].executions, *g.executions))
        return [self._beam(ctx, g) for g in grown]

    def _beam(self, ctx: StrategyContext, g: Grown) -> Beam:
        """A whole trajectory as a finished candidate."""
        return Beam(
            Trajectory(ctx.prompt_ids, g.segments),
            trajectory_steps(g.segments, ctx.split, self.loop.settings),
            finished=True,
            finish_reason="length" if g.finish_reason == "length" else "stop",
            executions=list(g.executions),
            reader=ctx.reasoning,
        )

    def expand(self, ctx: StrategyContext, beams: Sequence[Beam], n: int) -> list[Beam]:
        c = ctx.config
        rows = self.loop.grow(
            [Origin(b.trajectory, b.executions) for b in beams],
            n,
            [min(c.tts_step_max_tokens, c.max_tokens - b.num_tokens) for b in beams],
            ctx.step_stops,
            ctx.generate,
            ctx.fit,
            step_delimiter=c.tts_step_delimiter,
        )
        return [
            ctx.child(beam, g.segments, whole_steps(g.segments), g.executions)
            for beam, row in zip(beams, rows)
            for g in row
        ]
