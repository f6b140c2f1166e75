"""The fast tier for dvts and particle_filtering, on the FAKE scripted backend and scorer.

Pins which subtree leaves survive, which particles are resampled for a fixed seed, the final
choice, the metadata statuses, and that every step costs ONE backend call and ONE scorer call.
The same searches run against the embedded model in tests/model/test_strategies.py.
"""

from __future__ import annotations

import pytest

from fakes import FakeScriptedBackend, FakeScriptedScorer, run_strategy
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError
from llm_tts.strategies.particle_filtering import resampling_weights

D = "\n\n"


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


# -- dvts ----------------------------------------------------------------------------------------
DVTS_SCRIPT = {
    "": ["a" + D, "b" + D, "c" + D, "d" + D],  # step 1: 2 subtrees x 2 candidates from the prompt
    "b" + D: [boxed(5), "e" + D],
    "c" + D: [boxed(7), boxed(9)],
    f"b{D}e{D}": [boxed(5), boxed(6)],
}
DVTS_SCORES = {
    "a" + D: 0.2,
    "b" + D: 0.8,  # subtree 0 keeps b
    "c" + D: 0.7,
    "d" + D: 0.7,  # subtree 1: a tie, the first (c) is kept
    f"b{D}{boxed(5)}": 0.1,
    f"b{D}e{D}": 0.9,  # subtree 0 continues with e
    f"c{D}{boxed(7)}": 0.6,
    f"c{D}{boxed(9)}": 0.3,  # subtree 1 finishes with 7
    f"b{D}e{D}{boxed(5)}": 0.5,
    f"b{D}e{D}{boxed(6)}": 0.4,
}


def test_fake_dvts_keeps_each_subtrees_best_step_in_one_call_per_step():
    backend, scorer = FakeScriptedBackend(DVTS_SCRIPT), FakeScriptedScorer(DVTS_SCORES)
    run = run_strategy(
        "dvts", backend, scorer, tts_num_subtrees=2, tts_candidates_per_step=2, tts_score_aggregation="min"
    )

    assert [(c.prefixes, c.n) for c in backend.calls] == [
        (("",), 4),  # all subtrees' first steps in ONE call
        (("b" + D, "c" + D), 2),  # both open subtrees in ONE call
        ((f"b{D}e{D}",), 2),  # subtree 1 has finished: only subtree 0 goes on
    ]
    assert len(scorer.calls) == 3  # one scorer call per step
    statuses = dict(run.statuses())
    assert statuses[f"b{D}e{D}{boxed(5)}"] == "kept"  # subtree 0's leaf: min(0.8, 0.9, 0.5) = 0.5
    assert statuses[f"c{D}{boxed(7)}"] == "selected"  # subtree 1's leaf: min(0.7, 0.6) = 0.6
    pruned = {t for t, s in run.statuses() if s == "pruned"}
    assert pruned == {"a" + D, "d" + D, f"b{D}{boxed(5)}", f"c{D}{boxed(9)}", f"b{D}e{D}{boxed(6)}"}
    assert [e.live_beams for e in run.events] == [2, 1, 0]


def test_fake_dvts_weighted_selection_votes_over_the_leaves():
    script = {"": [boxed(3), boxed(4), boxed(3), boxed(5), boxed(4), boxed(6)]}
    scores = {boxed(3): 0.4, boxed(4): 0.5, boxed(5): 0.1, boxed(6): 0.9}
    run = run_strategy(
        "dvts",
        FakeScriptedBackend(script),
        FakeScriptedScorer(scores),
        tts_num_subtrees=3,
        tts_candidates_per_step=2,
        tts_selection="weighted",
    )
    # the subtrees keep 4 (0.5 > 0.4), 3 (0.4 > 0.1) and 6 (0.9 > 0.5): one vote each, 6 weighs most
    leaves = [(b.answer, b.status) for b in run.outcome.candidates if b.status != "pruned"]
    assert leaves == [("4", "kept"), ("3", "kept"), ("6", "selected")]
    assert run.outcome.vote is not None and run.outcome.vote.answer == "6"


# -- particle_filtering ---------------------------------------------------------------------------
PF_SCRIPT = {
    "": ["a" + D, "b" + D, boxed(5)],
    "a" + D: [boxed(7)],
}
PF_SCORES = {"a" + D: 0.99, "b" + D: 0.01, boxed(5): 0.5, f"a{D}{boxed(7)}": 0.8}


def test_fake_particle_filtering_resamples_by_reward_with_a_fixed_seed():
    backend, scorer = FakeScriptedBackend(PF_SCRIPT), FakeScriptedScorer(PF_SCORES)
    run = run_strategy("particle_filtering", backend, scorer, tts_num_particles=3, seed=0, tts_score_aggregation="min")

    # step 1: 3 particles from the prompt in ONE call; boxed(5) finishes at once; a and b are
    # resampled: a (logit 4.6) takes both draws, b (logit -4.6) is dropped; step 2 extends both
    # copies of a in ONE call.
    assert [(c.prefixes, c.n) for c in backend.calls] == [(("",), 3), (("a" + D, "a" + D), 1)]
    assert len(scorer.calls) == 2
    assert [(b.text, b.status, b.resampled) for b in run.outcome.candidates] == [
        (boxed(5), "kept", 0),
        (f"a{D}{boxed(7)}", "selected", 2),  # min(0.99, 0.8) = 0.8 beats 0.5
        (f"a{D}{boxed(7)}", "kept", 2),
        ("b" + D, "pruned", 0),
    ]


def test_fake_particle_filtering_is_reproducible_for_a_seed_and_varies_without_one():
    script = {"": ["a" + D, "b" + D], "a" + D: [boxed(1)], "b" + D: [boxed(2)]}
    scores = {"a" + D: 0.5, "b" + D: 0.5, f"a{D}{boxed(1)}": 0.5, f"b{D}{boxed(2)}": 0.5}

    def draws(seed: int | None) -> tuple[str, ...]:
        backend = FakeScriptedBackend(script)
        run_strategy("particle_filtering", backend, FakeScriptedScorer(scores), tts_num_particles=2, seed=seed)
        return backend.calls[1].prefixes

    assert len({draws(3) for _ in range(5)}) == 1  # equal rewards, so only the seed decides
    assert len({draws(None) for _ in range(40)}) > 1


def test_fake_particle_filtering_marks_open_particles_length_after_max_steps():
    script = {"": ["a" + D, "b" + D]}
    scores = {"a" + D: 0.6, "b" + D: 0.4}
    run = run_strategy(
        "particle_filtering",
        FakeScriptedBackend(script),
        FakeScriptedScorer(scores),
        tts_num_particles=2,
        tts_max_steps=1,
    )
    assert [(b.text, b.status, b.finish_reason) for b in run.outcome.candidates] == [
        ("a" + D, "selected", "length"),
        ("b" + D, "kept", "length"),
    ]


def test_resampling_weights_use_logits_for_probabilities_and_raw_scores_otherwise():
    assert resampling_weights([0.5, 0.5], 1.0) == pytest.approx([1.0, 1.0])
    w = resampling_weights([0.9, 0.1], 1.0)  # logits +-2.197: odds 81 to 1
    assert w[1] / w[0] == pytest.approx(1 / 81)
    w = resampling_weights([-1.0, -3.0], 2.0)  # log-space scores: exp(-1 / 2)
    assert w == pytest.approx([1.0, pytest.approx(0.36788, rel=1e-4)])
    assert resampling_weights([1.0, 0.0], 1.0)[1] > 0  # a reward of 0 keeps a tiny chance


# -- budgets -------------------------------------------------------------------------------------
def test_fake_budget_maps_onto_each_searchs_main_size():
    engine = TTSEngine(FakeScriptedBackend({}))
    plan = engine.plan(
        [{"role": "user", "content": "hi"}],
        TTSConfig.create(tts_strategy="dvts", tts_budget=12, tts_candidates_per_step=4),
    )
    assert plan.config.tts_num_subtrees == 3
    plan = engine.plan(
        [{"role": "user", "content": "hi"}], TTSConfig.create(tts_strategy="particle_filtering", tts_budget=12)
    )
    assert plan.config.tts_num_particles == 12
    with pytest.raises(InvalidParameterError, match="tts_budget"):
        engine.plan(
            [{"role": "user", "content": "hi"}],
            TTSConfig.create(tts_strategy="dvts", tts_budget=64, tts_candidates_per_step=1),
        )
