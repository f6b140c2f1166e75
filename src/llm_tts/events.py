"""The progress event vocabulary both faces speak: the event, its name and its JSON form.

A search reports each step as a :class:`ProgressEvent`. In-process ChatTTS hands it to LangChain
as a custom event and as ``response_metadata`` of a stream chunk; the service sends it in
``choices[0]`` of an SSE chunk, where the HTTP ChatTTS reads it back. All of them name it
:data:`PROGRESS_EVENT_NAME` and write it as :func:`progress_to_json` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The LangChain custom-event name, the response_metadata key and the key of an SSE chunk's choice.
PROGRESS_EVENT_NAME = "tts_progress"


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a search."""

    strategy: str
    step: int  # 1-based step (or 1 for one-shot strategies)
    live_beams: int  # candidates still being extended
    finished: int  # candidates set aside as finished
    best_score: float | None  # best aggregated score so far (higher is better)
    message: str = ""  # a short human-readable line
    stopped_by: str | None = None  # set on the event that ends a run early (TTSMetadata.stopped_by's values)


ProgressCallback = Callable[[ProgressEvent], None]

_DEFAULTS: dict[str, Any] = {"strategy": "", "step": 0, "live_beams": 0, "finished": 0, "best_score": None}
_FIELDS = tuple(f.name for f in dataclasses.fields(ProgressEvent))


def progress_to_json(event: ProgressEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


def progress_from_json(data: dict[str, Any]) -> ProgressEvent:
    """Rebuild a ProgressEvent from its JSON form (unknown keys from newer servers are ignored)."""
    return ProgressEvent(**{**_DEFAULTS, **{k: data[k] for k in _FIELDS if k in data}})
