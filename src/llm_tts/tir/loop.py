"""The tool-integrated reasoning loop: generate, run the code block, inject its output, continue.

Every generation of a TIR request also stops at ``code_end`` (the tag stays in the text). A sample
that stopped there has the code between the last ``code_begin`` and that tag run in a sandbox
(replaying the trajectory's earlier blocks first, so their state is there); the output, wrapped
in the output tags, is appended as an injected segment (``Segment.injected``: never counted as
sampled) and the sample continues from the exact token ids. All samples that need a block run
at the same moment have their blocks run concurrently, and all samples that continue go to the
backend in ONE call. After ``max_code_executions`` blocks the model is told and continues
without running more. In a step strategy (``step_delimiter`` given) a step does not end inside
a code block, and a block's output and the words after it belong to the step that wrote it.

On a chat-only API (no token-level continuation) the trajectory is carried as chat messages: the
request's messages, then for each block an assistant message with the model's text up to and
including ``code_end`` and a user message with the output block, and the model's next reply
continues the trajectory (docs/guides/code-execution.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_tts.backends.base import EncodingBackend
from llm_tts.messages import ChatMessage
from llm_tts.metadata import CodeExecutionInfo
from llm_tts.tir.blocks import REFUSED_STATUS, REPLAYED_STATUSES, CodeExecutionSettings
from llm_tts.tir.runner import CodeJob, CodeRunner
from llm_tts.types import FinishReason, Segment, Trajectory, text_after_injected

Generate = Callable[[Sequence[Sequence[int]], int, int, Sequence[str]], list[list[Segment]]]
Fit = Callable[[Segment, int], Segment]  # cuts a segment to a token budget, marked "length"


@dataclass(frozen=True)
class Origin:
    """Where samples start: a trajectory and the code blocks already along it."""

    trajectory: Trajectory
    executions: Sequence[CodeExecutionInfo] = ()


@dataclass(frozen=True)
class Grown:
    """One sample grown from an origin: its new segments (model and injected) and blocks."""

    segments: tuple[Segment, ...]
    executions: tuple[CodeExecutionInfo, ...]

    @property
    def last_model(self) -> Segment:
        return next(s for s in reversed(self.segments) if s.is_model)

    @property
    def finish_reason(self) -> FinishReason | None:
        """The last segment's; "length" when the budget ran out right after an output."""
        last = self.segments[-1]
        return last.finish_reason if last.is_model else "length"

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def answer_text(self) -> str:
        """The model's text after the last injected output: where its answer is."""
        return text_after_injected(self.segments)


@dataclass
class _Draft:
    origin: Origin
    budget: int  # tokens this sample may still add (model and injected)
    segments: list[Segment] = field(default_factory=list)
    executions: list[CodeExecutionInfo] = field(default_factory=list)
    done: bool = False

    def add(self, seg: Segment) -> None:
        self.segments.append(seg)
        self.budget -= len(seg)

    @property
    def all_segments(self) -> tuple[Segment, ...]:
        return self.origin.trajectory.segments + tuple(self.segments)

    @property
    def all_executions(self) -> list[CodeExecutionInfo]:
        return [*self.origin.executions, *self.executions]

    @property
    def model_tail(self) -> str:
        """The model's text since the last injected segment (where a pending block is)."""
        return text_after_injected(self.all_segments)


class CodeExecutionLoop:
    """One request's TIR loop; built by the engine, used by the strategy's generation calls."""

    def __init__(
        self,
        settings: CodeExecutionSettings,
        runner: CodeRunner,
        backend: EncodingBackend,
        messages: Sequence[ChatMessage],
        *,
        continue_final_message: bool = False,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.backend = backend
        self.messages = tuple(messages)
        self.chat = not backend.capabilities.continuation  # carry the trajectory as chat messages
        self._seed: Grown | None = None
        self._prelude: tuple[str, ...] = ()  # blocks of the continued message, replayed before any other
        # TTSEngine.plan checked that the messages end with an assistant message to continue.
        self._seed_pending = continue_final_message

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.settings.code_end,)

    # -- the seed: a trailing assistant message that ends with a block not run yet --------------
    def seed(self) -> Grown | None:
        """The output of the block the continued assistant message ends with (run once)."""
        if self._seed_pending:
            self._seed_pending = False
            text = self.messages[-1].content
            self._prelude = tuple(self.settings.closed_blocks(text))  # a continued message's blocks ran before
            if self.settings.closes_block(text) and self.settings.pending_code(text) is not None:
                self._prelude = tuple(self.settings.closed_blocks(text)[:-1])  # ran before: their state is kept
                root = _Draft(Origin(Trajectory(())), budget=1 << 30)
                self._run_blocks([root], [text])
                self._seed = Grown(tuple(root.segments), tuple(root.executions))
        return self._seed

    def _rooted(self, origin: Origin) -> Origin:
        """An origin at the prompt starts after the seed's output, when there is one."""
        seed = self.seed()
        if seed is None or origin.trajectory.segments:
            return origin
        return Origin(origin.trajectory.extend(*seed.segments), [*origin.executions, *seed.executions])

    # -- growing samples --------------------------------------------------------------------
    def grow(
        self,
        origins: Sequence[Origin],
        n: int,
        budgets: Sequence[int],
        stop: Sequence[str],
        generate: Generate,
        fit: Fit,
        *,
        step_delimiter: str | None = None,
    ) -> list[list[Grown]]:
        """``n`` samples of each origin, each grown through its code blocks until it ends (whole
        trajectories) or ends its step (``step_delimiter``). ``budgets[i]`` caps origin i's tokens."""
        rooted = [self._rooted(o) for o in origins]
        seeded = [len(r.trajectory.segments) - len(o.trajectory.segments) for o, r in zip(origins, rooted)]
        stops = tuple(dict.fromkeys((*stop, *self.stops)))
        rows = generate([self._prompt(_Draft(o, 0)) for o in rooted], n, max(1, *budgets), stops)
        drafts = [[_Draft(o, b) for _ in row] for o, b, row in zip(rooted, budgets, rows)]
        for row, segs in zip(drafts, rows):
            for d, seg in zip(row, segs):
                d.add(fit(seg, d.budget))
        flat = [d for row in drafts for d in row]
        while True:
            active = [d for d in flat if self._continues(d, step_delimiter)]
            if not active:
                break
            closing = [d for d in active if d.segments[-1].is_model and self._closes(d)]
            self._run_blocks(closing, [d.model_tail for d in closing])
            go = [d for d in active if d.budget > 0 and self._fits(d)]
            for d in active:
                d.done = d not in go
            if not go:
                continue
            more = generate([self._prompt(d) for d in go], 1, max(d.budget for d in go), stops)
            for d, (seg,) in zip(go, more):
                d.add(fit(seg, d.budget))
        return [[self._grown(d, k) for d in row] for row, k in zip(drafts, seeded)]

    def _grown(self, d: _Draft, seeded: int) -> Grown:
        seed_segs = d.origin.trajectory.segments[len(d.origin.trajectory.segments) - seeded :] if seeded else ()
        seed_runs = tuple(self._seed.executions) if seeded and self._seed else ()
        return Grown((*seed_segs, *d.segments), (*seed_runs, *d.executions))

    def _closes(self, d: _Draft) -> bool:
        last = d.segments[-1]
        if last.finish_reason == "stop" and last.stop_text == self.settings.code_end:
            return True
        # A chat API may drop the stop string it stopped at: an open block that ended is closed.
        return self.chat and last.finish_reason in ("stop", "eos") and self.settings.in_open_block(d.model_tail)

    def _continues(self, d: _Draft, step_delimiter: str | None) -> bool:
        if d.done or not d.segments:
            return False
        last = d.segments[-1]
        if not last.is_model:
            return True  # an output was injected: the model goes on
        if self._closes(d):
            return True
        # A step does not end inside a code block: the delimiter there is a blank line of code.
        step_text = "".join(s.text for s in d.segments)
        return (
            step_delimiter is not None
            and last.finish_reason == "stop"
            and last.stop_text == step_delimiter
            and self.settings.in_open_block(step_text)
        )

    def _fits(self, d: _Draft) -> bool:
        return len(self._prompt(d)) < self.backend.max_context_tokens - 1 or self.chat

    # -- running blocks -----------------------------------------------------------------------
    def _run_blocks(self, drafts: Sequence[_Draft], texts: Sequence[str]) -> None:
        """Run each draft's pending block (all at once) and inject what the model sees next."""
        s = self.settings
        jobs: list[tuple[_Draft, str, CodeJob]] = []
        for d, text in zip(drafts, texts):
            code = s.pending_code(text + ("" if s.closes_block(text) else s.code_end))
            restore = "" if s.closes_block(text) else s.code_end  # a chat API dropped the tag
            done = d.all_executions
            used = sum(e.status != REFUSED_STATUS for e in done)
            if code is None:
                self._inject(d, restore)  # a closing tag with no block: nothing to run
            elif used >= s.max_executions:
                d.executions.append(CodeExecutionInfo(code=code, output="", status=REFUSED_STATUS, seconds=0.0))
                self._inject(d, restore + s.refused_block())
            else:
                history = self._prelude + tuple(e.code for e in done if e.status in REPLAYED_STATUSES)
                jobs.append((d, restore, CodeJob(code, history, s.timeout)))
        if not jobs:
            return
        results = self.runner.run([j for _, _, j in jobs])
        for (d, restore, job), result in zip(jobs, results):
            d.executions.append(
                CodeExecutionInfo(
                    code=job.code,
                    output=s.shown_output(result),  # never the raw capture: up to the sandbox's 1 MiB
                    output_bytes=result.output_bytes,
                    output_sha256=result.output_sha256,
                    status=result.status,
                    seconds=result.seconds,
                )
            )
            left = s.max_executions - sum(e.status != REFUSED_STATUS for e in d.all_executions)
            self._inject(d, restore + s.output_block(result, left))

    def _inject(self, d: _Draft, text: str) -> None:
        if text:
            d.add(Segment.injected(self.backend.encode(text), text))

    # -- prompts --------------------------------------------------------------------------------
    def _prompt(self, d: _Draft) -> list[int]:
        """Token ids to continue from, or on a chat API the chat that carries the trajectory."""
        traj = d.origin.trajectory.extend(*d.segments)
        if not self.chat or not traj.segments:
            return list(traj.token_ids)
        turns: list[tuple[str, str]] = []  # (role, content) after the request's messages
        end = self.settings.code_end
        for seg in traj.segments:
            text = seg.text
            if not seg.is_model and text.startswith(end) and turns and turns[-1][0] == "assistant":
                turns[-1] = ("assistant", turns[-1][1] + end)  # the tag the API dropped closes the model's turn
                text = text[len(end) :]
            role = "assistant" if seg.is_model else "user"
            if turns and turns[-1][0] == role:
                turns[-1] = (role, turns[-1][1] + text)
            else:
                turns.append((role, text))
        extra = [ChatMessage(role=r, content=c.strip("\n") if r == "user" else c) for r, c in turns]  # type: ignore[arg-type]
        return self.backend.render_chat([*self.messages, *extra])
