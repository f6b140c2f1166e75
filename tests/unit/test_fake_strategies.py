"""The fast tier: every strategy on a FAKE scripted backend and scorer (tests/fakes.py), no model.

Each test scripts the candidates and their scores, then pins which candidates the strategy
keeps, prunes and selects, how ties break, the statuses in ``tts_metadata``, and that each step
costs ONE backend call (all candidates of the step) and ONE scorer call. Runs in seconds:
``pytest -m fast``. The same strategies run against real models in tests/model/test_strategies.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from fakes import QUESTION, FakeScriptedBackend, FakeScriptedScorer, Out, run_strategy
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import CapabilityError

D = "\n\n"  # the default step delimiter


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


# -- self_consistency ---------------------------------------------------------------------------
def test_fake_self_consistency_majority_tie_goes_to_the_group_with_the_most_confident_path():
    paths = [
        Out(f"x{D}{boxed(5)}", 0.5),
        Out(boxed(7), 0.9),
        Out(f"y{D}{boxed(5)}", 0.6),
        Out(f"z{D}{boxed(7)}", 0.3),
        Out(boxed(9), 0.99),
    ]
    backend = FakeScriptedBackend({"": paths})
    run = run_strategy("self_consistency", backend, None, num_paths=5)

    assert [c.n for c in backend.calls] == [5]  # all paths in ONE call
    assert backend.calls[0].prefixes == ("",) and backend.calls[0].stop == ()
    # 5 and 7 tie on two votes each; 7's best path (p=0.9) beats 5's best (p=0.6); 9 has one vote.
    assert run.statuses() == [
        (paths[0].text, "kept"),
        (boxed(7), "selected"),
        (paths[2].text, "kept"),
        (paths[3].text, "kept"),
        (boxed(9), "kept"),
    ]
    assert run.outcome.vote.answer == "7"
    assert run.outcome.vote.distribution == {"5": 2, "7": 2, "9": 1}
    assert run.outcome.vote.consensus == pytest.approx(0.4)
    assert [s.text for s in run.outcome.candidates[0].steps] == ["x" + D, boxed(5)]  # split on token boundaries


def test_fake_self_consistency_full_tie_goes_to_the_first_group_and_its_first_path():
    paths = [Out(f"a{D}{boxed(6)}", 0.5), Out(boxed(8), 0.5), Out(f"b{D}{boxed(6)}", 0.5), Out(boxed(8), 0.5)]
    run = run_strategy("self_consistency", FakeScriptedBackend({"": paths}), None, num_paths=4)
    assert [s for _, s in run.statuses()] == ["selected", "kept", "kept", "kept"]
    assert run.outcome.selected.answer == "6"


def test_fake_self_consistency_with_a_scorer_breaks_ties_by_its_scores_in_one_call():
    paths = [Out(boxed(1), 0.9), Out(boxed(2), 0.1)]
    scorer = FakeScriptedScorer({boxed(1): 0.2, boxed(2): 0.8})
    run = run_strategy("self_consistency", FakeScriptedBackend({"": paths}), scorer, num_paths=2)
    assert scorer.calls == [[(1, 0), (1, 0)]]  # every path's steps in ONE scorer call
    assert run.statuses() == [(boxed(1), "kept"), (boxed(2), "selected")]  # the scorer, not the logprobs, decided
    assert run.outcome.selected.score == pytest.approx(0.8)


# -- offline_bon --------------------------------------------------------------------------------
OFFLINE = [f"a{D}{boxed(5)}", f"b{D}{boxed(7)}", f"c{D}{boxed(7)}", boxed(5)]
OFFLINE_SCORES = {
    "a" + D: 0.9,
    f"a{D}{boxed(5)}": 0.2,  # min 0.2, last 0.2
    "b" + D: 0.6,
    f"b{D}{boxed(7)}": 0.7,  # min 0.6, last 0.7
    "c" + D: 0.6,
    f"c{D}{boxed(7)}": 0.6,  # min 0.6 (ties b), last 0.6
    boxed(5): 0.5,  # min 0.5, last 0.5
}


def test_fake_offline_bon_selects_the_best_aggregated_score_first_on_a_tie():
    backend, scorer = FakeScriptedBackend({"": OFFLINE}), FakeScriptedScorer(OFFLINE_SCORES)
    run = run_strategy("offline_bon", backend, scorer, tts_num_trajectories=4, tts_score_aggregation="min")

    assert [(c.prefixes, c.n) for c in backend.calls] == [(("",), 4)]  # ONE backend call
    assert scorer.calls == [[(2, 0), (2, 0), (2, 0), (1, 0)]]  # ONE scorer call, every step of every trajectory
    assert [b.score for b in run.outcome.candidates] == pytest.approx([0.2, 0.6, 0.6, 0.5])
    assert [s for _, s in run.statuses()] == ["kept", "selected", "kept", "kept"]  # b and c tie: b came first


def test_fake_offline_bon_aggregation_changes_the_pick():
    run = run_strategy(
        "offline_bon",
        FakeScriptedBackend({"": OFFLINE}),
        FakeScriptedScorer(OFFLINE_SCORES),
        tts_num_trajectories=4,
        tts_score_aggregation="max",
    )
    assert [b.score for b in run.outcome.candidates] == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert run.outcome.selected.text == OFFLINE[0]


def test_fake_weighted_offline_bon_sums_scores_per_answer():
    run = run_strategy(
        "offline_bon",
        FakeScriptedBackend({"": OFFLINE}),
        FakeScriptedScorer(OFFLINE_SCORES),
        tts_num_trajectories=4,
        tts_score_aggregation="last",
        tts_selection="weighted",
    )
    # answer 5: 0.2 + 0.5 = 0.7; answer 7: 0.7 + 0.6 = 1.3 -> 7, and its best member (b, 0.7)
    assert run.outcome.vote.group_weights == pytest.approx({"5": 0.7, "7": 1.3})
    assert [s for _, s in run.statuses()] == ["kept", "selected", "kept", "kept"]


# -- online_bon ---------------------------------------------------------------------------------
ONLINE = {
    "": ["a1" + D, "b1" + D, "a1" + D],  # a duplicate, dropped before scoring
    "b1" + D: ["b2" + D, "c2" + D, boxed(5)],
    f"b1{D}b2{D}": [boxed(5), boxed(6), "d3" + D],
}
ONLINE_SCORES = {
    "a1" + D: 0.4,
    "b1" + D: 0.7,
    f"b1{D}b2{D}": 0.5,
    f"b1{D}c2{D}": 0.5,
    f"b1{D}{boxed(5)}": 0.3,  # b2 and c2 tie: b2 came first
    f"b1{D}b2{D}{boxed(5)}": 0.8,
    f"b1{D}b2{D}{boxed(6)}": 0.8,
    f"b1{D}b2{D}d3{D}": 0.1,
}


def test_fake_online_bon_keeps_the_best_new_step_until_an_answer():
    backend, scorer = FakeScriptedBackend(ONLINE), FakeScriptedScorer(ONLINE_SCORES)
    run = run_strategy(
        "online_bon",
        backend,
        scorer,
        tts_candidates_per_step=3,
        tts_max_steps=10,
        tts_step_max_tokens=50,
        max_tokens=200,
    )

    # one backend call per step, all candidates of the step in it; steps stop at the delimiter
    assert [(c.prefixes, c.n, c.stop) for c in backend.calls] == [
        (("",), 3, (D,)),
        (("b1" + D,), 3, (D,)),
        ((f"b1{D}b2{D}",), 3, (D,)),
    ]
    assert [c.max_tokens for c in backend.calls] == [50, 50, 50]
    # one scorer call per step, scoring only the new step of each candidate
    assert scorer.calls == [[(1, 0), (1, 0)], [(2, 1)] * 3, [(3, 2)] * 3]
    sel = run.outcome.selected
    assert sel.text == f"b1{D}b2{D}{boxed(5)}" and sel.finished and sel.finish_reason == "stop"
    assert run.statuses() == [
        (f"b1{D}b2{D}{boxed(5)}", "selected"),
        ("a1" + D, "pruned"),
        (f"b1{D}c2{D}", "pruned"),
        (f"b1{D}{boxed(5)}", "pruned"),
        (f"b1{D}b2{D}{boxed(6)}", "pruned"),
        (f"b1{D}b2{D}d3{D}", "pruned"),
    ]
    assert sel.step_scores == pytest.approx([0.7, 0.5, 0.8])
    assert [e.step for e in run.events] == [1, 2, 3]


def test_fake_online_bon_out_of_steps_is_marked_length():
    run = run_strategy(
        "online_bon",
        FakeScriptedBackend(ONLINE),
        FakeScriptedScorer(ONLINE_SCORES),
        tts_candidates_per_step=3,
        tts_max_steps=2,
    )
    assert run.outcome.selected.text == f"b1{D}b2{D}"
    assert run.outcome.selected.finish_reason == "length"
    assert [s for _, s in run.statuses()] == ["selected", "pruned", "pruned", "pruned"]


def test_fake_online_bon_a_step_cut_by_step_max_tokens_is_marked_and_continued():
    script = {"": ["abcdefghijk" + D], "abcdefghi": [boxed(1)]}  # the box is 9 tokens: it fits
    scores = {"abcdefghi": 0.5, f"abcdefghi{boxed(1)}": 0.5}
    run = run_strategy(
        "online_bon",
        FakeScriptedBackend(script),
        FakeScriptedScorer(scores),
        tts_candidates_per_step=1,
        tts_step_max_tokens=9,
    )
    sel = run.outcome.selected
    assert sel.text == f"abcdefghi{boxed(1)}" and sel.truncated_steps == 1 and sel.finish_reason == "stop"


# -- beam_search --------------------------------------------------------------------------------
BEAM = {
    "": ["a" + D, "b" + D, "c" + D, "a" + D],  # first step: beam_size x candidates = 4; one duplicate
    "a" + D: [boxed(5), "a2" + D],
    "b" + D: ["b2" + D, "b3" + D],
    f"b{D}b2{D}": [boxed(7), "b4" + D],
}
BEAM_SCORES = {  # aggregation min over the steps so far, shown after each line
    "a" + D: 0.9,
    "b" + D: 0.8,
    "c" + D: 0.7,
    f"a{D}{boxed(5)}": 0.6,  # 0.6, finished
    f"a{D}a2{D}": 0.5,  # 0.5
    f"b{D}b2{D}": 0.95,  # 0.8
    f"b{D}b3{D}": 0.5,  # 0.5, ties a2: a2 came first
    f"b{D}b2{D}{boxed(7)}": 0.7,  # 0.7, finished
    f"b{D}b2{D}b4{D}": 0.9,  # 0.8
}


def test_fake_beam_search_keeps_the_best_beams_and_selects_the_best_finished():
    backend, scorer = FakeScriptedBackend(BEAM), FakeScriptedScorer(BEAM_SCORES)
    run = run_strategy("beam_search", backend, scorer, tts_beam_size=2, tts_candidates_per_step=2, tts_max_steps=5)

    # ONE backend call per step with every live beam in it
    assert [(c.prefixes, c.n) for c in backend.calls] == [(("",), 4), (("a" + D, "b" + D), 2), ((f"b{D}b2{D}",), 2)]
    # ONE scorer call per step, only the new step of each (deduplicated) candidate
    assert scorer.calls == [[(1, 0)] * 3, [(2, 1)] * 4, [(3, 2)] * 2]
    # step 1: a, b live; c pruned. step 2: a->5 finishes, one room left: b2 (0.8) stays, a2 and b3
    # (0.5 each) pruned. step 3: b2->7 finishes; the beam is full, so b4 is pruned; search ends.
    assert run.statuses() == [
        (f"a{D}{boxed(5)}", "kept"),
        (f"b{D}b2{D}{boxed(7)}", "selected"),
        ("c" + D, "pruned"),
        (f"a{D}a2{D}", "pruned"),
        (f"b{D}b3{D}", "pruned"),
        (f"b{D}b2{D}b4{D}", "pruned"),
    ]
    assert run.outcome.selected.score == pytest.approx(0.7)
    assert [(e.step, e.live_beams, e.finished) for e in run.events] == [(1, 2, 0), (2, 1, 1), (3, 0, 2)]


def test_fake_beam_search_weighted_selection_votes_over_the_finished_beams():
    script = {"": [f"x {boxed(3)}", f"y {boxed(3)}", boxed(4)]}
    scores = {f"x {boxed(3)}": 0.4, f"y {boxed(3)}": 0.4, boxed(4): 0.7}
    fields = dict(tts_beam_size=3, tts_candidates_per_step=1)
    best = run_strategy(
        "beam_search", FakeScriptedBackend(script), FakeScriptedScorer(scores), tts_selection="best", **fields
    )
    assert best.outcome.selected.answer == "4"  # the best single score
    weighted = run_strategy(
        "beam_search", FakeScriptedBackend(script), FakeScriptedScorer(scores), tts_selection="weighted", **fields
    )
    assert weighted.outcome.selected.answer == "3"  # 0.4 + 0.4 outweighs 0.7
    assert weighted.outcome.vote is not None and weighted.outcome.vote.distribution == {"3": 2, "4": 1}


@pytest.mark.parametrize(
    "strategy, fields",
    [
        ("offline_bon", {"tts_num_trajectories": 3}),
        ("beam_search", {"tts_beam_size": 3, "tts_candidates_per_step": 1}),
        ("dvts", {"tts_num_subtrees": 3, "tts_candidates_per_step": 1}),
        ("particle_filtering", {"tts_num_particles": 3}),
    ],
)
def test_fake_scored_strategies_vote_weighted_by_default(strategy, fields):
    script = {"": [f"x {boxed(3)}", f"y {boxed(3)}", boxed(4)]}
    scores = {f"x {boxed(3)}": 0.4, f"y {boxed(3)}": 0.4, boxed(4): 0.7}
    run = run_strategy(strategy, FakeScriptedBackend(script), FakeScriptedScorer(scores), **fields)
    assert run.outcome.selected.answer == "3"  # 0.4 + 0.4 outweighs the single best score, 0.7
    assert run.outcome.vote is not None and run.outcome.vote.group_weights == pytest.approx({"3": 0.8, "4": 0.7})


def test_fake_beam_search_without_a_finished_beam_returns_the_best_open_one_marked_length():
    run = run_strategy(
        "beam_search",
        FakeScriptedBackend(BEAM),
        FakeScriptedScorer(BEAM_SCORES),
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_max_steps=1,
    )
    assert run.statuses() == [("a" + D, "selected"), ("b" + D, "kept"), ("c" + D, "pruned")]
    assert all(b.finish_reason == "length" for b in run.outcome.candidates[:2])


def test_fake_beam_search_tie_at_the_last_open_slot_goes_to_the_earlier_candidate():
    script = {"": ["p" + D, "q" + D, "r" + D, "s" + D]}  # beam 2 x 2 candidates on the first step
    scores = {"p" + D: 0.5, "q" + D: 0.9, "r" + D: 0.5, "s" + D: 0.1}
    run = run_strategy(
        "beam_search",
        FakeScriptedBackend(script),
        FakeScriptedScorer(scores),
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_max_steps=1,
    )
    # q is best; p and r tie for the second beam: p, generated first, keeps it
    assert run.statuses() == [("q" + D, "selected"), ("p" + D, "kept"), ("r" + D, "pruned"), ("s" + D, "pruned")]


def test_fake_beam_search_tie_between_finished_beams_goes_to_the_first():
    script = {"": [boxed(1), boxed(2)]}
    run = run_strategy(
        "beam_search",
        FakeScriptedBackend(script),
        FakeScriptedScorer({boxed(1): 0.5, boxed(2): 0.5}),
        tts_beam_size=2,
        tts_candidates_per_step=1,
    )
    assert run.statuses() == [(boxed(1), "selected"), (boxed(2), "kept")]


def test_fake_beam_search_max_tokens_cuts_the_step_and_finishes_the_beam():
    script = {"": ["abcdefgh" + D]}
    run = run_strategy(
        "beam_search",
        FakeScriptedBackend(script),
        FakeScriptedScorer({"abcdef": 0.5}),
        tts_beam_size=1,
        tts_candidates_per_step=1,
        max_tokens=6,
    )
    sel = run.outcome.selected
    assert sel.text == "abcdef" and sel.finish_reason == "length" and sel.num_tokens == 6


# -- tts_metadata through the engine ----------------------------------------------------------------
# The real perplexity scorer on the fake's logprobs: every step scores exactly its Out's p.
@pytest.mark.parametrize(
    "strategy, script, config, expected",
    [
        (
            "self_consistency",
            {"": [Out(boxed(3), 0.4), Out(boxed(4), 0.8), Out(boxed(3), 0.5)]},
            {"num_paths": 3},
            [("3", "kept"), ("4", "kept"), ("3", "selected")],
        ),  # 3 wins the vote; its most confident path is returned
        (
            "offline_bon",
            {"": [Out(boxed(3), 0.4), Out(boxed(4), 0.8), Out(boxed(3), 0.5)]},
            {"tts_num_trajectories": 3, "tts_selection": "best"},
            [("3", "kept"), ("4", "selected"), ("3", "kept")],
        ),
        (
            "online_bon",
            {"": [Out("s" + D, 0.3), Out("t" + D, 0.6)], "t" + D: [Out(boxed(4), 0.9), Out(boxed(3), 0.2)]},
            {"tts_candidates_per_step": 2},
            [("4", "selected"), (None, "pruned"), ("3", "pruned")],
        ),
        (
            "beam_search",
            {"": [Out("s" + D, 0.3), Out("t" + D, 0.6)], "t" + D: [Out(boxed(4), 0.9)], "s" + D: [Out(boxed(3), 0.2)]},
            {"tts_beam_size": 2, "tts_candidates_per_step": 1},
            [("4", "selected"), ("3", "kept")],
        ),
    ],
)
def test_fake_metadata_statuses_through_the_engine(strategy, script, config, expected):
    scorer = None if strategy == "self_consistency" else "perplexity"
    engine = TTSEngine(FakeScriptedBackend(script))
    result = engine.run(
        [{"role": "user", "content": QUESTION}], {"tts_strategy": strategy, "tts_scorer": scorer, **config}
    )
    meta = result.metadata
    assert [(c.answer, c.status) for c in meta.candidates] == expected
    assert meta.backend == "fake_scripted" and meta.strategy == strategy
    selected = next(c for c in meta.candidates if c.status == "selected")
    assert result.text == selected.text and meta.selected_answer == selected.answer
    # every scripted continuation was generated once, one token per character, pruned ones included
    assert meta.usage.completion_tokens == sum(len(o.text) for outs in script.values() for o in outs)


def test_fake_no_logprobs_backend_refuses_logprob_scorers_before_generating():
    # What an API without logprobs is: validate and run refuse before any sample is drawn.
    backend = FakeScriptedBackend({"": [Out(boxed(5))] * 2})
    backend.capabilities = dataclasses.replace(backend.capabilities, logprobs=False)
    engine = TTSEngine(backend)
    for scorer in ("entropy", "perplexity", "sequence_prob"):
        config = TTSConfig.create(tts_strategy="offline_bon", tts_scorer=scorer, tts_num_trajectories=2)
        for call in (engine.validate, engine.run):
            with pytest.raises(CapabilityError) as info:
                call([{"role": "user", "content": QUESTION}], config)
            assert scorer in str(info.value)
    assert backend.calls == []
