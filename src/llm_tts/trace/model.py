"""The trace of one run (``llm_tts.trace``, version 1): the tree of its nodes and its events in order.

A trace is what a run did, not only what it returned: every node the search made (the prompt,
each step of a step search, each whole candidate of a one-shot strategy) with its parent, text,
token range, scores and status (and why), and the run's events (sampling calls, scorer calls,
steps, early stops, budget hits, the selection) in the order they happened. Times are seconds.
The JSON Schema published with the package (``trace.schema.json``) is generated from these models.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_NAME = "llm_tts.trace"
SCHEMA_VERSION = 1
SCHEMA_FILE = "trace.schema.json"  # the published schema, shipped in this package (and in docs/reference)

NodeKind = Literal["prompt", "step", "candidate"]
NodeStatus = Literal["kept", "pruned", "selected", "finished", "aborted", "resampled"]
EventType = Literal["sample", "score", "step", "early_stop", "budget", "code_execution", "select"]


class _Open(BaseModel):
    # Keys a later version adds are kept when this version reads its trace (a reader never fails on them).
    model_config = ConfigDict(extra="allow")


class TraceCodeExecution(_Open):
    """One code block run inside a node, as the model saw its output (never the raw capture)."""

    code: str = Field(description="the code the model wrote")
    output: str = Field(description="the output as the model saw it (cut at max_code_output_characters, marked)")
    output_bytes: int = Field(default=0, description="length in bytes of the whole capture the sandbox read back")
    output_sha256: str | None = Field(default=None, description="sha256 (hex) of the whole capture; None when not run")
    status: str = Field(description="ok, error, timeout, killed or limit (not run: max_code_executions reached)")
    elapsed_s: float = Field(default=0.0, description="wall time of the block")


class TraceNode(_Open):
    """One node of the search tree."""

    id: str = Field(description="unique within the trace: 'n0' is the prompt")
    parent: str | None = Field(description="the node this one grew from; None for the prompt")
    kind: NodeKind = Field(
        description="prompt: the root (one per trace); step: one step of a step search; candidate: a whole "
        "completion of a one-shot strategy (a child of the prompt)"
    )
    step: int | None = Field(default=None, description="step searches: the step number (1 = the first step)")
    text: str = Field(description="prompt: the question; step: the step's text; candidate: its whole completion")
    part: Literal["thinking", "answer"] | None = Field(
        None, description="reasoning models: whether the node's text is thinking or answer; None: not parsed"
    )
    tokens: tuple[int, int] | None = Field(
        None, description="[start, end) of the node's text in its path's completion tokens; None for the prompt"
    )
    step_score: float | None = Field(default=None, description="the scorer's score of this step (or the last step)")
    step_scores: list[float] = Field(
        default_factory=list, description="candidates: the score of each of their steps, in order"
    )
    score: float | None = Field(default=None, description="the path's aggregated score up to this node")
    status: NodeStatus | None = Field(
        None,
        description="selected: the returned node (its ancestors are the selected path); kept: extended further; "
        "finished: ended normally, not chosen; aborted: cut by the budget, the deadline or a stopping rule; "
        "pruned: dropped by the search; resampled: replaced at a resampling step. None for the prompt",
    )
    reason: str | None = Field(default=None, description="why the node has its status, in a few words")
    answer: str | None = Field(default=None, description="the answer the path states here, if any")
    finish_reason: Literal["stop", "length"] | None = Field(
        None, description="leaves: 'length' when a limit ended it before an answer"
    )
    candidate: int | None = Field(
        None, description="the node's index in tts_metadata.candidates (None: not listed there)"
    )
    code_executions: list[TraceCodeExecution] = Field(
        default_factory=list, description="the code blocks run inside this node, in order"
    )
    elapsed_s: float | None = Field(default=None, description="seconds of the sampling call that made this node")


class TraceEvent(_Open):
    """One thing the run did, in order."""

    t: float = Field(description="seconds since the run started")
    type: EventType = Field(
        description="sample: a backend call; score: a scorer call; step: a search step ended; early_stop: a rule "
        "or the deadline ended the run; budget: the token budget was reached; code_execution: a block ran; "
        "select: the answer was chosen"
    )
    step: int | None = Field(default=None, description="the search step it belongs to, where there is one")
    nodes: list[str] = Field(default_factory=list, description="the nodes it made, scored or concerns")
    detail: dict[str, Any] = Field(default_factory=dict, description="a small free-form object")


class TraceVoteGroup(_Open):
    """One group of equivalent answers in the run's vote."""

    answer: str
    count: int = Field(description="candidates in the group")
    weight: float | None = Field(default=None, description="what the group scored in the vote")
    nodes: list[str] = Field(default_factory=list, description="the group's nodes")


class TraceUsage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = Field(default=0, description="every generated token of every node, pruned ones too")


class TraceRun(_Open):
    """The run as a whole."""

    strategy: str
    scorer: str | None = None
    model: str | None = None
    request_id: str | None = None
    started_at: str = Field(default="", description="when the run started: UTC, ISO 8601")
    elapsed_s: float = 0.0
    config: dict[str, Any] = Field(default_factory=dict, description="the TTS fields in force")
    stopped_by: str | None = Field(
        None, description="why the run ended early (tts_metadata.stopped_by); None: it did not"
    )
    selected: str | None = Field(default=None, description="the id of the selected node")
    answer: str | None = None
    vote: list[TraceVoteGroup] | None = Field(default=None, description="voting strategies: the groups, largest first")
    usage: TraceUsage = Field(default_factory=TraceUsage)


class Trace(_Open):
    """A run's trace (``{"schema": "llm_tts.trace", "version": 1, ...}``)."""

    schema_: Literal["llm_tts.trace"] = Field(default="llm_tts.trace", alias="schema")
    version: Literal[1] = 1
    run: TraceRun
    nodes: list[TraceNode]
    events: list[TraceEvent] = Field(default_factory=list)
    labels: dict[str, Any] = Field(
        default_factory=dict,
        description="set when read back: where the trace came from (question id, correct, file); empty as written",
    )

    model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    def node(self, node_id: str) -> TraceNode:
        """The node with id ``node_id`` (KeyError when there is none)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def path(self, node_id: str) -> list[TraceNode]:
        """The nodes from the prompt down to ``node_id``."""
        by_id = {n.id: n for n in self.nodes}
        out = [by_id[node_id]]
        while out[-1].parent is not None:
            out.append(by_id[out[-1].parent])
        return out[::-1]

    def to_json(self) -> dict[str, Any]:
        """The trace as JSON-ready data (the published schema's shape)."""
        return self.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a trace, generated from :class:`Trace`."""
    schema = Trace.model_json_schema(by_alias=True, mode="serialization")
    schema["required"] = ["schema", "version", *schema.get("required", [])]  # what names a trace is always written
    schema["$id"] = f"https://llm-tts/schemas/{SCHEMA_NAME}/v{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def published_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package (a test keeps it equal to :func:`json_schema`)."""
    data: dict[str, Any] = json.loads(resources.files("llm_tts.trace").joinpath(SCHEMA_FILE).read_text())
    return data
