"""One trace format for every run (``llm_tts.trace``, version 1): the model, its recorder, its reader.

:mod:`.model` is the typed trace (and :func:`json_schema`, published as ``trace.schema.json``);
:mod:`.recorder` collects a run's nodes and events; :mod:`.reader` reads traces back from a trace
file, an ``llm-tts eval`` folder or a session export (:func:`load`). See docs/guides/traces.md.
"""

from llm_tts.trace.model import (
    SCHEMA_FILE,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    Trace,
    TraceCodeExecution,
    TraceEvent,
    TraceNode,
    TraceRun,
    TraceUsage,
    TraceVoteGroup,
    json_schema,
    published_schema,
)
from llm_tts.trace.reader import load, parse
from llm_tts.trace.recorder import TraceRecorder

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "Trace",
    "TraceCodeExecution",
    "TraceEvent",
    "TraceNode",
    "TraceRecorder",
    "TraceRun",
    "TraceUsage",
    "TraceVoteGroup",
    "json_schema",
    "load",
    "parse",
    "published_schema",
]
