"""How a run's candidates become its trace: the strategy context reports to a :class:`Tracer`.

The context calls the same few hooks in every run (a sampling call, nodes made, a scorer call, a
step ended, an early stop); strategies add only why they dropped a candidate (:meth:`Tracer.note`).
A run without ``tts_trace`` gets :data:`NO_TRACE`, whose hooks do nothing. A run with it gets a
:class:`RunTracer`, which records each new candidate as a node when it is made (its parent, text,
token range, code outputs, the time its call took) and reads the rest (scores, answers, statuses)
from the same candidates once the run has chosen, the facts ``tts_metadata`` is built from too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llm_tts.answers import Vote, group_answers
from llm_tts.metadata import CodeExecutionInfo
from llm_tts.reasoning import thinking_token_mask
from llm_tts.strategies.candidates import Beam
from llm_tts.trace.model import NodeKind, NodeStatus, Trace, TraceCodeExecution, TraceNode, TraceRun, TraceVoteGroup
from llm_tts.trace.recorder import PROMPT_ID, TraceRecorder

TokenTexts = Callable[[Sequence[int]], list[str]]


class Tracer:
    """The hooks a run reports to; this one records nothing (the run did not ask for a trace)."""

    enabled = False

    def sampled(self, prompts: int, n: int, max_tokens: int, tokens: int, elapsed_s: float) -> None:
        """A backend call returned ``tokens`` new tokens for ``prompts`` x ``n`` samples."""

    def made(self, parents: Sequence[Beam] | None, children: Sequence[Beam]) -> None:
        """New candidates: ``n`` per parent in order (each parent's next steps), or whole ones (no parents)."""

    def scored(self, beams: Sequence[Beam], elapsed_s: float) -> None:
        """One scorer call scored ``beams``."""

    def reported(self, step: int, live: int, finished: int, best: float | None, message: str) -> None:
        """A search step (or a wave of samples) ended."""

    def stopped(self, reason: str, message: str) -> None:
        """The run ends early: a stopping rule, the token budget or the deadline."""

    def note(self, beams: Sequence[Beam], status: NodeStatus, reason: str | Sequence[str]) -> None:
        """Why the search drops ``beams`` (one reason for all, or one each); ``status`` is "pruned",
        or "resampled" for a particle not drawn at resampling."""

    def finish(self, candidates: Sequence[Beam], selected: Beam, vote: Vote | None, run: TraceRun) -> Trace | None:
        """The trace of the finished run (None: nothing was recorded)."""
        return None


NO_TRACE = Tracer()


class RunTracer(Tracer):
    """Records a run's candidates as trace nodes (see the module docstring)."""

    enabled = True

    def __init__(self, question: str, token_texts: TokenTexts) -> None:
        self.recorder = TraceRecorder(question)
        self.token_texts = token_texts
        self.step = 1  # the step the next calls belong to
        self._ids: dict[int, str] = {}  # id(beam) -> node id
        self._beams: dict[str, Beam] = {}  # node id -> beam (held, so no id() is reused during the run)
        self._extended: set[str] = set()
        self._notes: dict[str, tuple[NodeStatus, str]] = {}
        self._call_s = 0.0  # sampling time since the last nodes were made

    def node_id(self, beam: Beam) -> str:
        """The beam's node; a beam never recorded (a search's empty root) is the prompt."""
        return self._ids.get(id(beam), PROMPT_ID)

    def sampled(self, prompts: int, n: int, max_tokens: int, tokens: int, elapsed_s: float) -> None:
        self._call_s += elapsed_s
        self.recorder.event(
            "sample", self.step, (), prompts=prompts, n=n, max_tokens=max_tokens, tokens=tokens, elapsed_s=elapsed_s
        )

    def made(self, parents: Sequence[Beam] | None, children: Sequence[Beam]) -> None:
        per_parent = max(1, len(children) // len(parents)) if parents else 0
        for i, child in enumerate(children):
            parent = parents[min(i // per_parent, len(parents) - 1)] if parents else None
            self._add(parent, child)
        self.recorder.nodes_made()
        self._call_s = 0.0

    def _add(self, parent: Beam | None, beam: Beam) -> None:
        if id(beam) in self._ids:
            return
        rec = self.recorder
        kind: NodeKind
        if parent is None:
            fields: dict[str, Any] = {"text": beam.text, "tokens": (0, beam.num_tokens)}
            parent_id, kind, new = PROMPT_ID, "candidate", beam.executions
        else:
            parent_id, kind = self.node_id(parent), "step"
            self._extended.add(parent_id)
            head, text = parent.text, beam.text
            step_text = text[len(head) :] if text.startswith(head) else (beam.steps[-1].text if beam.steps else "")
            fields = {"text": step_text, "tokens": (parent.num_tokens, beam.num_tokens), "step": len(beam.steps)}
            new = beam.executions[len(parent.executions) :]
        node_id = rec.add_node(
            parent_id, kind, code_executions=[_execution(e) for e in new], elapsed_s=round(self._call_s, 6), **fields
        )
        self._ids[id(beam)] = node_id
        self._beams[node_id] = beam
        for e in new:
            rec.event("code_execution", self.step, [node_id], status=e.status, elapsed_s=e.seconds)

    def scored(self, beams: Sequence[Beam], elapsed_s: float) -> None:
        nodes = [self.node_id(b) for b in beams]
        self.recorder.event("score", self.step, nodes, requests=len(beams), elapsed_s=elapsed_s)

    def reported(self, step: int, live: int, finished: int, best: float | None, message: str) -> None:
        detail: dict[str, Any] = {"live": live, "finished": finished, "best": best, "message": message}
        self.recorder.event("step", step, (), **{k: v for k, v in detail.items() if v not in (None, "")})
        self.step = step + 1

    def stopped(self, reason: str, message: str) -> None:
        self.recorder.event(
            "budget" if reason == "budget" else "early_stop", self.step, (), reason=reason, message=message
        )

    def note(self, beams: Sequence[Beam], status: NodeStatus, reason: str | Sequence[str]) -> None:
        reasons = [reason] * len(beams) if isinstance(reason, str) else list(reason)
        for beam, why in zip(beams, reasons):
            self._notes[self.node_id(beam)] = (status, why)

    def finish(self, candidates: Sequence[Beam], selected: Beam, vote: Vote | None, run: TraceRun) -> Trace | None:
        for beam in candidates:  # every candidate is a node (the search made them all through the context)
            self._add(None, beam)
        listed = {self._ids[id(b)]: i for i, b in enumerate(candidates)}
        chosen = self._ids[id(selected)]
        outcome = {id(b) for b in candidates}
        seen_tokens: dict[tuple[str | None, tuple[int, ...]], str] = {}  # siblings with the same tokens
        for node_id, beam in self._beams.items():
            node = self.recorder.nodes[node_id]
            self._describe(node, beam)
            node.candidate = listed.get(node_id)
            first = seen_tokens.setdefault((node.parent, beam.trajectory.completion_token_ids), node_id)
            node.status, node.reason = self._status(node_id, beam, chosen, id(beam) in outcome, first)
        run.selected = chosen
        run.answer = run.answer if run.answer is not None else selected.answer
        if vote is not None:
            run.vote = self._vote_groups(candidates, vote)
        self.recorder.event("select", None, [chosen], answer=run.answer)
        return self.recorder.build(run)

    def _describe(self, node: TraceNode, beam: Beam) -> None:
        """The facts known once the run is over: scores, answer, ending, thinking or answer part."""
        scored = beam.step_scores if node.kind == "candidate" or len(beam.step_scores) >= len(beam.steps) else []
        node.step_score = scored[-1] if scored else None
        node.step_scores = list(beam.step_scores) if node.kind == "candidate" else []
        node.score = beam.score
        node.answer = beam.answer
        node.finish_reason = beam.finish_reason if beam.finished else None
        split = beam.thinking_split
        if split is not None and node.kind == "step" and node.tokens is not None:
            thinking = sum(thinking_token_mask(beam.trajectory.segments, split, self.token_texts))
            node.part = "thinking" if node.tokens[0] < thinking else "answer"

    def _status(
        self, node_id: str, beam: Beam, chosen: str, in_outcome: bool, first: str
    ) -> tuple[NodeStatus, str | None]:
        if node_id == chosen:
            return "selected", None
        if node_id in self._extended:
            return "kept", None
        if beam.status == "pruned":
            status, reason = self._notes.get(node_id, ("pruned", _pruned_reason(beam)))
            return status, reason
        if in_outcome:
            if beam.aborted:
                return "aborted", "stopped mid-generation (a stopping rule, the token budget or the deadline)"
            if beam.finish_reason == "length":
                return "finished", "a limit (max_tokens or tts_max_steps) ended it before an answer"
            return "finished", None
        if first != node_id:
            return "pruned", f"the same tokens as {first}: dropped as a duplicate"
        return self._notes.get(node_id, ("pruned", "dropped by the search"))

    def _vote_groups(self, candidates: Sequence[Beam], vote: Vote) -> list[TraceVoteGroup]:
        pool = [b for b in candidates if b.status != "pruned"] or list(candidates)
        members = {
            g.answer: [self._ids[id(pool[i])] for i in g.members] for g in group_answers([b.answer for b in pool])
        }
        groups = [
            TraceVoteGroup(answer=a, count=n, weight=vote.group_weights.get(a), nodes=members.get(a, []))
            for a, n in vote.distribution.items()
        ]
        return sorted(groups, key=lambda g: -g.count)


def _pruned_reason(beam: Beam) -> str:
    if beam.aborted:
        return "stopped mid-generation: it does not vote"
    return "dropped by the search"


def _execution(e: CodeExecutionInfo) -> TraceCodeExecution:
    return TraceCodeExecution(
        code=e.code,
        output=e.output,
        output_bytes=e.output_bytes,
        output_sha256=e.output_sha256,
        status=e.status,
        elapsed_s=e.seconds,
    )
