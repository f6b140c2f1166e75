"""The recorder a run reports to: nodes as they are made, events as they happen.

Only a run that was asked for a trace makes a :class:`TraceRecorder` (the strategy context's
tracer is a no-op otherwise, see :mod:`llm_tts.strategies.tracing`). The recorder knows nothing
of strategies: it keeps node records, which the caller may update, until :meth:`TraceRecorder.build`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from llm_tts.trace.model import EventType, NodeKind, Trace, TraceEvent, TraceNode, TraceRun

PROMPT_ID = "n0"


class TraceRecorder:
    """Collects one run's nodes and events; :meth:`build` makes the :class:`Trace`."""

    def __init__(self, prompt_text: str = "") -> None:
        self.start = time.perf_counter()
        self.started_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.nodes: dict[str, TraceNode] = {}
        self.events: list[TraceEvent] = []
        self._unattached: list[TraceEvent] = []  # sampling calls whose nodes are not made yet
        self.add_node(None, "prompt", text=prompt_text)

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.start

    def add_node(self, parent: str | None, kind: NodeKind, **fields: Any) -> str:
        """A new node under ``parent``; its id. The sampling calls since the last node list it."""
        node_id = f"n{len(self.nodes)}"
        self.nodes[node_id] = TraceNode(id=node_id, parent=parent, kind=kind, **fields)
        for event in self._unattached:
            event.nodes.append(node_id)
        return node_id

    def nodes_made(self) -> None:
        """The nodes of the pending sampling calls are all made: later nodes belong to later calls."""
        self._unattached = []

    def event(self, type: EventType, step: int | None = None, nodes: Iterable[str] = (), **detail: Any) -> TraceEvent:
        event = TraceEvent(t=round(self.now(), 6), type=type, step=step, nodes=list(nodes), detail=detail)
        self.events.append(event)
        if type == "sample":
            self._unattached.append(event)
        return event

    def build(self, run: TraceRun) -> Trace:
        """The trace of the run so far, with ``run`` as its summary."""
        run.started_at = run.started_at or self.started_at
        return Trace.model_validate({"run": run, "nodes": list(self.nodes.values()), "events": list(self.events)})
