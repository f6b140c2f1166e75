"""The trace format on the FAKE scripted backend and scorer: a scripted search pins exactly which
node is kept, pruned (and why), dropped as a duplicate and selected. The trace validates against the
published schema, agrees with tts_metadata, and reads back from a file and an eval folder. The
same searches run on the embedded model in tests/model/test_traces.py."""

from __future__ import annotations

import json

import jsonschema
import pytest

from fakes import QUESTION, FakeScriptedBackend, Out, run_strategy
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError
from llm_tts.evaluation import ResultRow, ResultsStore
from llm_tts.metadata import TTSMetadata
from llm_tts.strategies.tracing import NO_TRACE
from llm_tts.trace import SCHEMA_FILE, Trace, TraceNode, json_schema, load, parse, published_schema
from llm_tts.trace.model import SCHEMA_NAME

D = "\n\n"


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


# beam_search, 2 beams x 2 candidates; the perplexity scorer scores a step exactly its p
BEAM_SCRIPT = {
    "": [Out("a" + D, 0.9), Out("b" + D, 0.5), Out("a" + D, 0.9), Out("d" + D, 0.2)],  # a twice: one is a duplicate
    "a" + D: [Out(boxed(5), 0.9), Out("e" + D, 0.3)],
    "b" + D: [Out(boxed(7), 0.7), Out(boxed(5), 0.6)],
}


def beam_trace() -> tuple[Trace, dict]:
    engine = TTSEngine(FakeScriptedBackend(BEAM_SCRIPT))
    config = TTSConfig.create(
        tts_strategy="beam_search", tts_beam_size=2, tts_candidates_per_step=2, tts_scorer="perplexity",
        tts_trace=True, temperature=1.0,
    )  # fmt: skip
    meta = engine.run([{"role": "user", "content": QUESTION}], config).metadata.model_dump(mode="json")
    return Trace.model_validate(meta["trace"]), meta


def test_fake_beam_search_trace_is_the_tree_the_search_made():
    trace, meta = beam_trace()
    by_text: dict[str, TraceNode] = {}  # each step node by its path's text (the first of twins)
    for n in trace.nodes[1:]:
        by_text.setdefault("".join(x.text for x in trace.path(n.id)[1:]), n)

    assert [n.kind for n in trace.nodes].count("prompt") == 1 and trace.nodes[0].text == QUESTION
    assert all(n.parent is None or trace.node(n.parent) for n in trace.nodes)
    selected = [n for n in trace.nodes if n.status == "selected"]
    assert [n.id for n in selected] == [trace.run.selected]
    assert [n.text for n in trace.path(trace.run.selected)] == [QUESTION, "a" + D, boxed(5)]
    assert [n.status for n in trace.path(trace.run.selected)[1:-1]] == ["kept"]
    # step 1: a, b kept (a's twin dropped as a duplicate), d ranked out; step 2: e open with no beam left
    assert by_text["a" + D].status == by_text["b" + D].status == "kept"
    duplicate = [n for n in trace.nodes if n.text == "a" + D and n.status == "pruned"]
    assert len(duplicate) == 1 and by_text["a" + D].id in (duplicate[0].reason or "")
    assert by_text["d" + D].reason == "ranked 3 of 3 open candidates at step 1, 2 beams left (0 finished)"
    assert by_text[f"a{D}e{D}"].status == "pruned" and "step 2" in (by_text[f"a{D}e{D}"].reason or "")
    assert by_text[f"b{D}{boxed(7)}"].status == "finished"
    assert all(n.reason for n in trace.nodes if n.status == "pruned")
    # scores, tokens, answers and the vote
    leaf = trace.node(trace.run.selected)
    assert (leaf.step_score, leaf.score, leaf.answer, leaf.tokens) == (
        pytest.approx(0.9),
        pytest.approx(0.9),
        "5",
        (3, 12),
    )
    assert trace.run.answer == meta["selected_answer"] == "5"
    assert [(g.answer, g.count, g.nodes) for g in trace.run.vote or []] == [
        ("5", 2, [leaf.id, by_text[f"b{D}{boxed(5)}"].id]),
        ("7", 1, [by_text[f"b{D}{boxed(7)}"].id]),
    ]
    # events in order: per step a sampling call, a scorer call and the step; then the selection
    assert [e.type for e in trace.events] == ["sample", "score", "step", "sample", "score", "step", "select"]
    assert [e.t for e in trace.events] == sorted(e.t for e in trace.events)
    assert set(trace.events[3].nodes) == {n.id for n in trace.nodes if n.step == 2}


def test_fake_trace_and_metadata_are_one_account_of_the_run():
    trace, meta = beam_trace()
    listed = {n.candidate: n for n in trace.nodes if n.candidate is not None}
    assert sorted(listed) == list(range(len(meta["candidates"])))
    as_metadata = {
        "selected": "selected",
        "finished": "kept",
        "aborted": "kept",
        "pruned": "pruned",
        "resampled": "pruned",
    }
    for i, c in enumerate(meta["candidates"]):
        node = listed[i]
        path_text = "".join(n.text for n in trace.path(node.id)[1:])
        assert (path_text, as_metadata[node.status or ""], node.score, node.answer) == (
            c["text"],
            c["status"],
            c["score"],
            c["answer"],
        )
    assert trace.run.usage.completion_tokens == meta["usage"]["completion_tokens"]


def test_fake_trace_validates_against_the_published_schema(tmp_path):
    trace, _ = beam_trace()
    data = trace.to_json()
    assert data["schema"] == SCHEMA_NAME and data["version"] == 1
    jsonschema.validate(data, published_schema())
    jsonschema.validate(json.loads(json.dumps(data)), json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "schema": "other"}, published_schema())


def test_published_schema_is_the_models_in_the_package_and_the_docs():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "reference" / SCHEMA_FILE
    assert published_schema() == json_schema() == json.loads(docs.read_text()), (
        "regenerate: PYTHONPATH=src python scripts/write_trace_schema.py"
    )


def test_fake_trace_reads_back_from_a_file_and_an_eval_folder(tmp_path):
    trace, meta = beam_trace()
    data = trace.to_json()
    (tmp_path / "one.json").write_text(json.dumps(data))
    store = ResultsStore(tmp_path / "eval")
    for question, correct in (("q1", False), ("q2", False), ("q1", True)):  # q1 run again: its last trace counts
        row = ResultRow(
            question_id=question, configuration="beam_search@2", strategy="beam_search", budget=2, seed=0, config={},
            gold="5", selected_answer="5", correct=correct, seconds=0.1, metadata=TTSMetadata.model_validate(meta),
        )  # fmt: skip
        store.append(row)

    (one,) = load(tmp_path / "one.json")
    assert one.nodes == trace.nodes and one.run.selected == trace.run.selected
    assert all(r.metadata is not None and r.metadata.trace is None for r in store.rows())  # rows stay small
    labelled = load(tmp_path / "eval")
    assert [(t.labels["question_id"], t.labels["correct"]) for t in labelled] == [("q2", False), ("q1", True)]
    assert labelled[1].to_json()["nodes"] == data["nodes"]


def test_a_trace_of_another_version_or_not_a_trace_is_refused(tmp_path):
    data = beam_trace()[0].to_json()
    with pytest.raises(InvalidParameterError, match="version"):
        parse({**data, "version": 2})
    with pytest.raises(InvalidParameterError, match="llm_tts.trace"):
        parse({"nodes": []})
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load(tmp_path / "missing.json")


def test_fake_run_without_tts_trace_records_nothing():
    run = run_strategy(
        "beam_search", FakeScriptedBackend(BEAM_SCRIPT), None, tts_beam_size=2, tts_candidates_per_step=2
    )
    assert run.ctx.trace is NO_TRACE
    engine = TTSEngine(FakeScriptedBackend(BEAM_SCRIPT))
    config = TTSConfig.create(
        tts_strategy="beam_search", tts_beam_size=2, tts_candidates_per_step=2, tts_scorer="perplexity"
    )
    assert engine.run([{"role": "user", "content": QUESTION}], config).metadata.trace is None


def test_fake_particle_filtering_trace_marks_undrawn_particles_resampled():
    from test_fake_searches import PF_SCORES, PF_SCRIPT

    from fakes import FakeScriptedScorer
    from llm_tts.trace import TraceRun

    backend, scorer = FakeScriptedBackend(PF_SCRIPT), FakeScriptedScorer(PF_SCORES)
    run = run_strategy(
        "particle_filtering", backend, scorer, tts_num_particles=3, seed=0, tts_score_aggregation="min", tts_trace=True
    )
    outcome = run.outcome
    trace = run.ctx.trace.finish(outcome.candidates, outcome.selected, outcome.vote, TraceRun(strategy="pf"))
    assert trace is not None
    (a,) = [n for n in trace.nodes if n.text == "a" + D]
    (b,) = [n for n in trace.nodes if n.text == "b" + D]
    assert (b.status, b.reason) == ("resampled", "not drawn at resampling after step 1")
    children = [n for n in trace.nodes if n.parent == a.id]  # a was drawn twice: two particles go on from it
    assert a.status == "kept" and len(children) == 2 and {n.status for n in children} == {"selected", "finished"}


# every strategy on one script: whole candidates end at once, steps stop at the delimiter
EVERY_SCRIPT = {
    "": [Out("a" + D + boxed(5), 0.9), Out("b" + D + boxed(7), 0.5)] * 4,
    "a" + D: [Out(boxed(5), 0.8), Out(boxed(6), 0.4)] * 4,
    "b" + D: [Out(boxed(7), 0.6), Out(boxed(5), 0.3)] * 4,
}
SIZES = {
    "self_consistency": {"num_paths": 4},
    "offline_bon": {"tts_num_trajectories": 4},
    "online_bon": {"tts_candidates_per_step": 2},
    "beam_search": {"tts_beam_size": 2, "tts_candidates_per_step": 2},
    "dvts": {"tts_num_subtrees": 2, "tts_candidates_per_step": 2},
    "particle_filtering": {"tts_num_particles": 4, "seed": 1},
}


def assert_tree(trace: Trace) -> None:
    ids = [n.id for n in trace.nodes]
    assert [n.id for n in trace.nodes if n.kind == "prompt"] == ["n0"]
    assert all(n.parent in ids[: ids.index(n.id)] for n in trace.nodes[1:])
    (selected,) = [n for n in trace.nodes if n.status == "selected"]
    assert selected.id == trace.run.selected and all(n.status == "kept" for n in trace.path(selected.id)[1:-1])
    assert all(n.reason for n in trace.nodes if n.status in ("pruned", "resampled"))
    assert all(n.status is not None for n in trace.nodes[1:])


@pytest.mark.parametrize("strategy", sorted(SIZES))
def test_fake_every_strategy_writes_a_valid_tree_that_agrees_with_its_metadata(strategy):
    engine = TTSEngine(FakeScriptedBackend(EVERY_SCRIPT))
    config = TTSConfig.create(
        tts_strategy=strategy, tts_scorer="perplexity", tts_trace=True, temperature=1.0, **SIZES[strategy]
    )
    meta = engine.run([{"role": "user", "content": QUESTION}], config).metadata.model_dump(mode="json")
    jsonschema.validate(meta["trace"], published_schema())
    trace = Trace.model_validate(meta["trace"])
    assert_tree(trace)
    listed = {n.candidate: n for n in trace.nodes if n.candidate is not None}
    assert sorted(listed) == list(range(len(meta["candidates"])))
    statuses = {
        "selected": "selected",
        "finished": "kept",
        "aborted": "kept",
        "pruned": "pruned",
        "resampled": "pruned",
    }
    assert [statuses[listed[i].status or ""] for i in range(len(listed))] == [c["status"] for c in meta["candidates"]]
    assert trace.run.answer == meta["selected_answer"]


def test_fake_deepconf_trace_drops_the_traces_below_its_bar():
    from llm_tts.trace import TraceRun

    script = {"": [Out(boxed(5), 0.9), Out(boxed(5), 0.8), Out(boxed(7), 0.1), Out(boxed(5), 0.7)]}
    run = run_strategy(
        "deepconf", FakeScriptedBackend(script), None, num_paths=4, tts_deepconf_mode="offline", tts_trace=True
    )
    outcome = run.outcome
    trace = run.ctx.trace.finish(outcome.candidates, outcome.selected, outcome.vote, TraceRun(strategy="deepconf"))
    assert trace is not None
    assert_tree(trace)
    assert [n.kind for n in trace.nodes[1:]] == ["candidate"] * 4
    # the fake's only top logprob is the sampled token's, so p = 0.9 is the least confident (0.105)
    (dropped,) = [n for n in trace.nodes if n.status == "pruned"]
    assert dropped.id == "n1" and (dropped.reason or "").startswith("confidence below the bar")
