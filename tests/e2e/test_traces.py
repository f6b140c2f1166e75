"""Traces of real runs on the embedded model: a beam search through ChatTTS in-process and over
HTTP, a self-consistency streamed through the official openai client. Each trace is
checked as a tree (one prompt root, parents exist, one selected node whose path reaches the root,
pruned nodes say why), against the published schema, and against the run's own tts_metadata."""

from __future__ import annotations

import json

import jsonschema
import openai

from llm_tts.integrations import ChatTTS
from llm_tts.trace import Trace, published_schema

Q = "What is 2 + 3?"
BEAM = {
    "tts_strategy": "beam_search", "tts_beam_size": 2, "tts_candidates_per_step": 2, "tts_max_steps": 2,
    "tts_step_max_tokens": 5, "max_tokens": 10, "seed": 0, "tts_trace": True,
}  # fmt: skip
SC = {"tts_strategy": "self_consistency", "num_paths": 3, "max_tokens": 8, "seed": 0, "tts_trace": True}
AS_METADATA = {"selected": "selected", "finished": "kept", "aborted": "kept", "pruned": "pruned", "resampled": "pruned"}


def checked_trace(md: dict) -> Trace:
    """The run's trace, checked as a tree, against the schema and against ``md`` (its tts_metadata)."""
    jsonschema.validate(md["trace"], published_schema())
    trace = Trace.model_validate(md["trace"])
    ids = [n.id for n in trace.nodes]
    assert len(set(ids)) == len(ids)
    assert [n.id for n in trace.nodes if n.kind == "prompt"] == ["n0"] and trace.nodes[0].parent is None
    assert all(n.parent in ids[: ids.index(n.id)] for n in trace.nodes[1:])  # a parent is made before its children
    (selected,) = [n for n in trace.nodes if n.status == "selected"]
    path = trace.path(selected.id)
    assert selected.id == trace.run.selected and path[0].id == "n0"
    assert all(n.status == "kept" for n in path[1:-1])
    assert all(n.reason for n in trace.nodes if n.status in ("pruned", "resampled"))
    assert trace.run.answer == md["selected_answer"] and trace.run.strategy == md["strategy"]
    assert trace.run.usage.completion_tokens == md["usage"]["completion_tokens"]
    listed = {n.candidate: n for n in trace.nodes if n.candidate is not None}
    assert sorted(listed) == list(range(len(md["candidates"])))
    for i, c in enumerate(md["candidates"]):
        node = listed[i]
        assert "".join(n.text for n in trace.path(node.id)[1:]) == c["text"]
        assert (AS_METADATA[node.status or ""], node.score, node.answer) == (c["status"], c["score"], c["answer"])
    assert [e.type for e in trace.events][-1] == "select" and trace.events[0].type == "sample"
    return trace


def test_beam_search_trace_through_chat_tts_in_process_and_over_http(tts_engine, service_url):
    local = ChatTTS(engine=tts_engine, **BEAM).invoke(Q).response_metadata["tts_metadata"]
    remote_llm = ChatTTS(base_url=f"{service_url}/v1", **BEAM)
    try:
        remote = remote_llm.invoke(Q).response_metadata["tts_metadata"]
    finally:
        remote_llm.close()
    for md in (local, remote):
        trace = checked_trace(md)
        assert {n.kind for n in trace.nodes} == {"prompt", "step"}
        assert all(n.tokens is not None and n.tokens[0] < n.tokens[1] for n in trace.nodes[1:])
        assert trace.run.config["tts_beam_size"] == 2
        assert trace.events[1].type == "score"  # every step is scored in one call after its sampling call
    assert local["trace"]["run"]["request_id"] is None
    assert remote["trace"]["run"]["request_id"].startswith("req-")


def test_self_consistency_trace_in_the_last_chunk_of_a_stream_through_the_openai_client(service_url):
    client = openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused")
    messages = [{"role": "user", "content": Q}]
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, stream=True, extra_body=SC
    )
    finals = [c.model_dump()["choices"][0].get("tts_metadata") for c in stream if c.choices]
    (md,) = [m for m in finals if m is not None]  # the last chunk's
    trace = checked_trace(md)
    assert trace.nodes[0].text == Q and [n.kind for n in trace.nodes[1:]] == ["candidate"] * 3
    assert sum(g.count for g in trace.run.vote or []) == sum((md["answer_distribution"] or {}).values())
    assert trace.run.request_id is not None and trace.run.request_id.startswith("req-")
    assert len(json.dumps(md["trace"])) < 20_000  # a few short candidates: a small record
