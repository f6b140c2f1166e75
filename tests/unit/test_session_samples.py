"""Sessions without a model (fast tier): turn alignment and re-render detection, sample building
from hand-made records (masks, logprobs, injected segments, candidates, rewards), the stores
(the same tests on memory, SQLite and a real PostgreSQL server: caps, TTL, order, rewards; WAL,
reopening, migration) and the ``llm-tts sessions export`` command."""

from __future__ import annotations

import json
import sqlite3

import pytest

from llm_tts.cli import main
from llm_tts.errors import InvalidParameterError, SessionFullError, SessionLimitError, SessionNotFoundError
from llm_tts.sessions import (
    CandidateRecord,
    MemorySessionStore,
    SampleOptions,
    SessionInfo,
    SessionOptions,
    SessionRecord,
    SessionStore,
    build_samples,
)
from llm_tts.sessions.postgres_store import PostgresSessionStore
from llm_tts.sessions.records import SegmentRecord
from llm_tts.sessions.sqlite_store import SQLiteSessionStore
from llm_tts.sessions.turns import align_turn

EOT = 2  # end-of-turn id in these token sequences
USER = [{"role": "user", "content": "q"}]


def candidate(ids, lps=None, *, index=0, status="selected", score=None, injected=None, finish="stop"):
    segments = [SegmentRecord(token_ids=list(ids), logprobs=list(lps or [-0.5] * len(ids)))]
    if injected:
        segments.append(SegmentRecord(token_ids=list(injected), logprobs=None, source="injected"))
    return CandidateRecord(
        index=index, segments=segments, status=status, score=score, step_scores=[score or 0.0], finish_reason=finish
    )


def record(prompt, candidates, messages, answer, selected=0, rid=None, continued_from=None):
    return SessionRecord(
        id=rid or f"rec-{len(prompt)}-{len(messages)}",
        session_id="sess-1",
        created_at=0.0,
        finished_at=1.0,
        status="completed",
        request={},
        response={"choices": [{"message": {"role": "assistant", "content": answer}}]},
        messages=messages,
        prompt_token_ids=list(prompt),
        continued_from=continued_from,
        strategy="beam_search" if len(candidates) > 1 else "self_consistency",
        scorer="entropy",
        candidates=candidates,
        selected=selected,
    )


def two_turns(prompt2):
    turn1 = record([10, 11, 12], [candidate([20, 21, EOT], [-0.1, -0.2, -0.3])], USER, "a", rid="r1")
    msgs2 = [*USER, {"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}]
    turn2 = record(prompt2, [candidate([30, EOT], [-0.4, -0.5])], msgs2, "b", rid="r2")
    return [turn1, turn2]


def test_clean_extension_merges_turns_with_mask_0_between():
    prompt2 = [10, 11, 12, 20, 21, EOT, 5, 40, 41, 6]
    (sample,) = build_samples(two_turns(prompt2), [EOT])
    assert sample.tokens == [*prompt2, 30, EOT]
    assert sample.response_length == len(sample.tokens) - 3
    assert sample.loss_mask == [1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert sample.rollout_log_probs == [-0.1, -0.2, -0.3, 0.0, 0.0, 0.0, 0.0, -0.4, -0.5]
    assert sample.metadata["turns"] == 2 and sample.metadata["rerendered_turns"] == []
    assert sample.metadata["record_ids"] == ["r1", "r2"]


def test_a_rerendered_answer_is_detected_and_the_sampled_tokens_kept():
    # the template re-tokenised the answer ([22] instead of [20, 21]) before its end-of-turn token
    prompt2 = [10, 11, 12, 22, EOT, 5, 40, 6]
    (sample,) = build_samples(two_turns(prompt2), [EOT])
    assert sample.tokens == [10, 11, 12, 20, 21, EOT, 5, 40, 6, 30, EOT]  # what the model produced
    assert sample.loss_mask == [1, 1, 1, 0, 0, 0, 1, 1]
    (mismatch,) = sample.metadata["rerendered_turns"]
    assert mismatch["record_id"] == "r1" and mismatch["rendered_answer_token_ids"] == [22, EOT]


def test_an_answer_cut_by_max_tokens_gets_the_templates_end_token_masked():
    alignment = align_turn([1, 2], [7, 8], [1, 2, 7, 8, EOT, 9], [EOT])
    assert alignment is not None and alignment.between == (EOT, 9) and not alignment.rerendered
    # re-rendered and without its own end token: the template's end token is "between" (mask 0)
    alignment = align_turn([1, 2], [7, 8], [1, 2, 78, EOT, 9], [EOT])
    assert alignment is not None and alignment.between == (EOT, 9) and alignment.rerendered


def test_a_changed_history_starts_a_new_conversation():
    prompt2 = [10, 99, 12, 20, 21, EOT, 5]  # the prompt before the answer changed
    samples = build_samples(two_turns(prompt2), [EOT])
    assert [s.metadata["turns"] for s in samples] == [1, 1]
    assert align_turn([10, 11, 12], [20], prompt2, [EOT]) is None


def test_injected_segments_are_mask_0_with_zero_logprobs():
    rec = record([1, 2], [candidate([3, 4], [-1.0, -2.0], injected=[50, 51])], USER, "x")
    (sample,) = build_samples([rec], [EOT])
    assert sample.loss_mask == [1, 1, 0, 0] and sample.rollout_log_probs == [-1.0, -2.0, 0.0, 0.0]


def test_search_candidates_become_grouped_samples_with_scores_as_rewards():
    cands = [
        candidate([3], index=0, status="pruned", score=0.1),
        candidate([4], index=1, status="selected", score=0.9),
        candidate([5, 6], index=2, status="kept", score=0.5, finish="length"),
    ]
    rec = record([1, 2], cands, USER, "x", selected=1, rid="r-search")
    samples = build_samples([rec], [EOT])
    assert [s.metadata["candidate_index"] for s in samples] == [1, 0, 2]
    assert [s.metadata["selected"] for s in samples] == [True, False, False]
    assert [s.reward for s in samples] == [0.9, 0.1, 0.5]
    assert {s.metadata["group"] for s in samples} == {"r-search"}
    assert samples[2].status == "truncated" and samples[2].tokens == [1, 2, 5, 6]
    only = build_samples([rec], [EOT], SampleOptions(candidates="selected", reward=2.0))
    assert len(only) == 1 and only[0].reward == 2.0 and only[0].tokens == [1, 2, 4]


def test_merge_turns_off_gives_one_sample_per_request():
    prompt2 = [10, 11, 12, 20, 21, EOT, 5, 40, 41, 6]
    samples = build_samples(two_turns(prompt2), [EOT], SampleOptions(merge_turns=False))
    assert [s.tokens for s in samples] == [[10, 11, 12, 20, 21, EOT], [*prompt2, 30, EOT]]


def info(sid="sess-1", now=100.0, ttl=10.0):
    return SessionInfo(
        id=sid, created_at=now, last_used_at=now, ttl_s=ttl, options=SessionOptions(), end_of_turn_ids=[EOT]
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "postgres":  # a fresh database on the session's server
        s: SessionStore = PostgresSessionStore(request.getfixturevalue("postgres_server").new_database())
    else:
        s = MemorySessionStore() if request.param == "memory" else SQLiteSessionStore(tmp_path / "s.sqlite3")
    yield s
    s.close()


def test_stores_keep_caps_ttl_and_order(store):
    store.create(info("a"), max_sessions=2)
    store.create(info("b"), max_sessions=2)
    with pytest.raises(SessionLimitError):
        store.create(info("c"), max_sessions=2)
    rec = record([1], [candidate([2])], USER, "x")
    for i in range(2):
        store.add_record(rec.model_copy(update={"id": f"r{i}", "session_id": "a"}), max_records=2)
    with pytest.raises(SessionFullError):
        store.add_record(rec.model_copy(update={"session_id": "a"}), max_records=2)
    assert [r.index for r in store.records("a")] == [0, 1] and store.get("a", now=105.0).num_records == 2
    store.touch("a", now=108.0)  # used: its TTL counts from here
    with pytest.raises(SessionNotFoundError):
        store.get("b", now=111.0)
    assert store.get("a", now=111.0).id == "a"
    assert store.purge_expired(now=111.0) == 1
    assert store.delete("a") and not store.delete("a")
    with pytest.raises(SessionNotFoundError):
        store.records("a")


def test_sqlite_store_is_wal_and_survives_reopening(tmp_path):
    path = tmp_path / "s.sqlite3"
    first = SQLiteSessionStore(path)
    first.create(info("a", now=1e12), max_sessions=5)
    first.add_record(record([1], [candidate([2])], USER, "x").model_copy(update={"session_id": "a"}), max_records=5)
    first.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = SQLiteSessionStore(path)
    assert again.records("a")[0].candidates[0].token_ids == [2]
    again.close()


def test_sessions_export_writes_jsonl(tmp_path, capsys):
    path = tmp_path / "s.sqlite3"
    store = SQLiteSessionStore(path)
    store.create(info("sess-1", now=1e12), max_sessions=5)
    for rec in two_turns([10, 11, 12, 20, 21, EOT, 5, 6]):
        store.add_record(rec, max_records=5)
    store.close()
    out = tmp_path / "samples.jsonl"
    assert main(["sessions", "export", "sess-1", "--out", str(out), "--session-db", str(path)]) == 0
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["tokens"] == [10, 11, 12, 20, 21, EOT, 5, 6, 30, EOT]
    assert main(["sessions", "export", "nope", "--out", str(out), "--session-db", str(path)]) == 2
    assert "no session 'nope'" in capsys.readouterr().err


def test_turn_rewards_ride_in_the_merged_sample_and_the_last_rewarded_turn_is_its_reward():
    prompt2 = [10, 11, 12, 20, 21, EOT, 5, 40, 41, 6]
    turn1, turn2 = two_turns(prompt2)
    (plain,) = build_samples([turn1, turn2], [EOT])
    assert plain.metadata["turn_rewards"] == [None, None] and plain.reward is None  # no score either
    assert plain.metadata["reward_positions"] == [2, 8]  # each answer's last token in the response
    assert plain.loss_mask[2] == 1 and plain.loss_mask[8] == 1
    (first_only,) = build_samples([turn1.model_copy(update={"reward": 0.25}), turn2], [EOT])
    assert first_only.reward == 0.25 and first_only.metadata["turn_rewards"] == [0.25, None]
    both = [turn1.model_copy(update={"reward": 0.25}), turn2.model_copy(update={"reward": 1.0})]
    (sample,) = build_samples(both, [EOT])
    assert sample.reward == 1.0 and sample.metadata["turn_rewards"] == [0.25, 1.0]
    (overridden,) = build_samples(both, [EOT], SampleOptions(reward=-1.0))
    assert overridden.reward == -1.0 and overridden.metadata["turn_rewards"] == [0.25, 1.0]


def test_rewards_are_set_all_or_none(store):
    store.create(info("a", now=1e12), max_sessions=5)
    for rec in two_turns([10, 11, 12, 20, 21, EOT, 5, 6]):
        store.add_record(rec.model_copy(update={"session_id": "a"}), max_records=5)
    store.set_rewards("a", {"r2": 1.5})
    with pytest.raises(InvalidParameterError):
        store.set_rewards("a", {"r1": 3.0, "nope": 1.0})  # one unknown: nothing is written
    with pytest.raises(SessionNotFoundError):
        store.set_rewards("b", {"r1": 1.0})
    assert [r.reward for r in store.records("a")] == [None, 1.5]


def test_an_sqlite_file_of_the_first_schema_is_migrated_and_keeps_its_records(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(  # the schema before rewards, as shipped
        """
        CREATE TABLE sessions (id TEXT PRIMARY KEY, last_used_at REAL NOT NULL, expires_at REAL NOT NULL,
                               info TEXT NOT NULL);
        CREATE INDEX sessions_expiry ON sessions (expires_at);
        CREATE TABLE records (session_id TEXT NOT NULL, idx INTEGER NOT NULL, data TEXT NOT NULL,
                              PRIMARY KEY (session_id, idx));
        """
    )
    session = info("a", now=1e12)
    old.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", ("a", 1e12, 2e12, session.model_dump_json()))
    rec = two_turns([10, 11, 12, 20, 21, EOT, 5, 6])[0].model_copy(update={"session_id": "a"})
    old.execute("INSERT INTO records VALUES (?, ?, ?)", ("a", 0, rec.model_dump_json(exclude={"reward"})))
    old.commit()
    old.close()
    store = SQLiteSessionStore(path)
    assert store.schema_version == 1
    store.set_rewards("a", {"r1": 0.5})
    store.close()
    again = SQLiteSessionStore(path)  # opening a migrated file again changes nothing
    (kept,) = again.records("a")
    assert kept.reward == 0.5 and kept.candidates[0].token_ids == [20, 21, EOT] and again.schema_version == 1
    again.close()


def test_a_retry_from_an_earlier_turn_branches_and_each_leaf_path_is_a_sample():
    turn1, retry_a = two_turns([10, 11, 12, 20, 21, EOT, 5, 40, 6])
    msgs_b = [*USER, {"role": "assistant", "content": "a"}, {"role": "tool", "content": "other"}]
    retry_b = record([10, 11, 12, 20, 21, EOT, 5, 41, 42, 6], [candidate([31, EOT], [-0.6, -0.7])], msgs_b, "c")
    msgs_3 = [*retry_a.messages, {"role": "assistant", "content": "b"}, {"role": "user", "content": "more"}]
    prompt3 = [10, 11, 12, 20, 21, EOT, 5, 40, 6, 30, EOT, 7, 8]
    third = record(prompt3, [candidate([50, EOT], [-0.8, -0.9])], msgs_3, "d", rid="r3")
    retry_b = retry_b.model_copy(update={"id": "r2b"})
    records = [turn1, retry_a, retry_b, third]  # r2 then r2b both continue r1; r3 continues r2
    short, deep = build_samples(records, [EOT])
    assert short.tokens == [10, 11, 12, 20, 21, EOT, 5, 41, 42, 6, 31, EOT]
    assert short.loss_mask == [1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert deep.tokens == [*prompt3, 50, EOT] and deep.metadata["record_ids"] == ["r1", "r2", "r3"]
    assert deep.loss_mask == [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1]
    assert deep.rollout_log_probs[:3] == short.rollout_log_probs[:3] == [-0.1, -0.2, -0.3]  # the shared turn, exact
    assert {short.metadata["group"], deep.metadata["group"]} == {"r1"} and deep.metadata["branched"]
    (linear,) = build_samples(two_turns([10, 11, 12, 20, 21, EOT, 5, 6]), [EOT])
    assert linear.metadata["group"] == "r2" and not linear.metadata["branched"]  # no branch: the last turn's
