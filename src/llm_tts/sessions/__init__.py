"""Sessions: records of the chat completions served under ``/sessions/{id}``, kept with their
token-level truth, and the training samples built from them."""

from llm_tts.sessions.factory import open_store
from llm_tts.sessions.records import CandidateRecord, SessionInfo, SessionOptions, SessionRecord, record_of
from llm_tts.sessions.samples import Sample, SampleOptions, build_samples
from llm_tts.sessions.store import MemorySessionStore, SessionStore

__all__ = [
    "CandidateRecord",
    "MemorySessionStore",
    "Sample",
    "SampleOptions",
    "SessionInfo",
    "SessionOptions",
    "SessionRecord",
    "SessionStore",
    "build_samples",
    "open_store",
    "record_of",
]
