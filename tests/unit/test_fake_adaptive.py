"""The fast tier for adaptive compute, on the FAKE scripted backend (tests/fakes.py).

The fake streams its samples one token per round in order (shorter ones finish first), like an
engine stepping a batch, so every stopping decision here is checked against a hand computation
on the scripted votes and logprobs: which path finished when, the posterior then, which paths
were aborted and how many tokens they kept.
"""

from __future__ import annotations

import math

import pytest

from fakes import QUESTION, FakeScriptedBackend, FakeScriptedScorer, Out, run_strategy
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError
from llm_tts.strategies.confidence import group_confidences, percentile
from llm_tts.strategies.stopping import leader_stays_probability, settled, wave_size
from polya import stays

D = "\n\n"


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


# -- the posterior rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,m", [(1, 0, 7), (3, 0, 13), (4, 0, 12), (5, 1, 10), (4, 1, 11), (6, 3, 7), (10, 4, 2)])
def test_fake_posterior_matches_the_hand_computation(a, b, m):
    assert leader_stays_probability(a, b, m) == pytest.approx(stays(a, b, m), abs=1e-12)


def test_fake_settled_rules():
    assert stays(3, 0, 13) < 0.95 < stays(4, 0, 12)  # 0.947, 0.980: 16 paths at 0.95 need 4 agreeing
    assert stays(4, 1, 11) < 0.95 < stays(5, 1, 10)  # or 5 to 1
    assert settled([3.0], left=13, threshold=0.95) is None
    assert settled([4.0], left=12, threshold=0.95) == "confidence"
    assert settled([3.0, 1.0], left=1, threshold=0.95) == "consensus"  # 3 - 1 > 1: the last path cannot overturn it
    assert settled([4.0], left=0, threshold=0.95) is None  # nothing left to save: the run is complete
    assert wave_size(16, 0.95) == 4 and wave_size(8, 0.95) == 3 and wave_size(64, 0.95) == 16


def test_fake_stop_confidence_aborts_the_running_path_when_the_vote_settles():
    # threshold 0.9 over 16 paths: waves of max(3 unanimous, 16 / 4) = 4. Paths 0-2 agree on 5 and
    # finish at rounds 11, 12, 13 (their lengths); after the third, stays(3, 0, 13) = 0.947 >= 0.9,
    # so path 3 (long) is aborted with the 12 tokens it had (it comes after path 2 in round 13).
    short = [boxed("5") + "x" * k for k in (2, 3, 4)]  # 9 + k characters = tokens
    long = "I think " * 10 + boxed("7")
    backend = FakeScriptedBackend({"": [Out(t) for t in [*short, long]]})
    run = run_strategy("self_consistency", backend, None, num_paths=16, tts_stop_confidence=0.9)

    assert stays(2, 0, 14) < 0.9 <= stays(3, 0, 13)
    assert [c.n for c in backend.calls] == [4]  # one wave, no second
    assert run.ctx.stopped_by == "confidence"
    lengths = [len(t) for t in short]
    assert lengths == [11, 12, 13]
    aborted = run.outcome.candidates[-1]
    assert aborted.aborted and aborted.status == "pruned" and aborted.num_tokens == 12
    assert run.outcome.vote.distribution == {"5": 3}
    assert run.ctx.completion_tokens == 11 + 12 + 13 + 12  # the aborted path's tokens are counted
    assert max(t for _, j, t in backend.watched if j == 3) == 12  # it stopped growing


def test_fake_stop_confidence_samples_another_wave_until_settled():
    # 8 paths at 0.95: waves of 3. Wave 1 votes 5, 5, 7 in that order (stays(1, 0, 7) = 0.72,
    # stays(2, 0, 6) = 0.88, stays(2, 1, 5) < 0.95). The fake answers wave 2 with the same three
    # paths, shortest first: 5 -> stays(3, 1, 4) = 0.83; 5 -> stays(4, 1, 3) = 0.952: stop, and the
    # wave's last path (the 7) is aborted. 6 of the 8 paths were started.
    paths = [Out(boxed("5")), Out(boxed("5") + "a"), Out(boxed("7") + "ab")]
    backend = FakeScriptedBackend({"": paths})
    run = run_strategy("self_consistency", backend, None, num_paths=8, tts_stop_confidence=0.95)
    assert max(stays(1, 0, 7), stays(2, 0, 6), stays(2, 1, 5), stays(3, 1, 4)) < 0.95 <= stays(4, 1, 3)
    assert [c.n for c in backend.calls] == [3, 3]
    assert run.ctx.stopped_by == "confidence"
    assert run.outcome.vote.distribution == {"5": 4, "7": 1}
    assert sum(c.aborted for c in run.outcome.candidates) == 1


def test_fake_stop_confidence_off_is_one_call_of_all_paths():
    backend = FakeScriptedBackend({"": [Out(boxed("5"))] * 6})
    run = run_strategy("self_consistency", backend, None, num_paths=6)
    assert [c.n for c in backend.calls] == [6] and backend.watched == [] and run.ctx.stopped_by is None


def test_fake_weighted_best_of_n_stops_on_effective_counts():
    # offline_bon, 8 trajectories, threshold 0.95 (waves of 3). Wave 1: answers 5, 5, 7 scored 0.9,
    # 0.9, 0.2: effective counts 3 x 1.8 / 2.0 = 2.7 and 0.3 with 5 left: P = 0.933 < 0.95. Wave 2
    # repeats them: 6 x 3.6 / 4.0 = 5.4 vs 0.6 with 2 left: 5.4 - 0.6 > 2, consensus.
    outs = [Out(boxed("5")), Out("so " + boxed("5")), Out(boxed("7"))]
    scores = {boxed("5"): 0.9, "so " + boxed("5"): 0.9, boxed("7"): 0.2}
    backend = FakeScriptedBackend({"": outs})
    run = run_strategy(
        "offline_bon", backend, FakeScriptedScorer(scores), tts_num_trajectories=8, tts_stop_confidence=0.95
    )
    assert 0.9 < leader_stays_probability(2.7, 0.3, 5) < 0.95
    assert [c.n for c in backend.calls] == [3, 3]
    assert run.ctx.stopped_by == "consensus"
    assert run.outcome.selected.answer == "5"


# -- DeepConf ---------------------------------------------------------------------------------------
def conf(p: float) -> float:
    return -math.log(p)  # the fake returns one top logprob per token, log(p): confidence -log(p)


def test_fake_deepconf_offline_filters_by_percentile_and_weights_the_vote():
    # Four traces, confidences -log p: 0.105 (p=.9), 0.357 (p=.7), 1.609 (p=.2), 2.303 (p=.1).
    # Percentile 50 of them = (0.357 + 1.609) / 2 = 0.983: traces 3 and 4 vote (weights 1.609 for 7,
    # 2.303 for 5), traces 1 and 2 (answer 9) are pruned, so 5 wins.
    outs = [Out(boxed("9"), 0.9), Out(boxed("9"), 0.7), Out(boxed("7"), 0.2), Out(boxed("5"), 0.1)]
    backend = FakeScriptedBackend({"": outs})
    run = run_strategy("deepconf", backend, None, num_paths=4, tts_deepconf_mode="offline", tts_deepconf_percentile=50)
    bar = percentile([conf(0.9), conf(0.7), conf(0.2), conf(0.1)], 50)
    assert bar == pytest.approx((conf(0.7) + conf(0.2)) / 2)
    assert [c.n for c in backend.calls] == [4]
    assert run.outcome.selected.answer == "5"
    assert {c.answer: c.status for c in run.outcome.candidates} == {"7": "kept", "5": "selected", "9": "pruned"}
    assert run.outcome.vote.group_weights == pytest.approx({"7": conf(0.2), "5": conf(0.1)})


def test_fake_deepconf_online_stops_low_confidence_traces_at_the_window():
    # Warm-up of 3: confidences conf(.2) = 1.609 (answer 7), conf(.25) = 1.386 (answer 8) and
    # conf(.9) = 0.105 (answer 9, 29 tokens). Percentile 50 -> bar 1.386: 7 and 8 vote, 9 does not;
    # 7 holds 1.609 / 2.995 = 54% of the weight, short of consensus. The fake answers the next wave
    # with the same three traces: the answer-9 trace's group confidence (0.105 over 4-token windows)
    # is below the bar at its 4th token, so it is aborted there; 7 wins 3.219 to 2.773.
    low = boxed("9") + " " * 20
    outs = [Out(boxed("7"), 0.2), Out(boxed("8"), 0.25), Out(low, 0.9)]
    backend = FakeScriptedBackend({"": outs})
    run = run_strategy(
        "deepconf",
        backend,
        None,
        num_paths=6,
        tts_deepconf_warmup=3,
        tts_deepconf_percentile=50,
        tts_confidence_window=4,
    )
    assert [c.n for c in backend.calls] == [3, 3]
    aborted = [c for c in run.outcome.candidates if c.aborted]
    assert len(aborted) == 1 and aborted[0].num_tokens == 4 and aborted[0].status == "pruned"
    assert run.outcome.selected.answer == "7"
    assert run.outcome.vote.group_weights == pytest.approx({"7": 2 * conf(0.2), "8": 2 * conf(0.25)})
    assert run.ctx.completion_tokens == 2 * (2 * len(boxed("7"))) + len(low) + 4
    assert run.ctx.stopped_by is None  # all six traces were sampled


def test_fake_deepconf_online_stops_sampling_when_the_weighted_vote_settles():
    # Two agreeing warm-up traces (percentile 0: both vote) are 2 effective votes with 14 traces
    # left: stays(2, 0, 14) = 0.88 < 0.95 (the paper's plain 95% share would stop here). The next
    # wave repeats them: 4 votes, 12 left, stays(4, 0, 12) = 0.98: stop after 4 of 16 traces.
    outs = [Out(boxed("7"), 0.2), Out("so " + boxed("7"), 0.3)]
    backend = FakeScriptedBackend({"": outs})
    run = run_strategy("deepconf", backend, None, num_paths=16, tts_deepconf_warmup=2, tts_deepconf_percentile=0)
    assert stays(2, 0, 14) < 0.95 <= stays(4, 0, 12)
    assert [c.n for c in backend.calls] == [2, 2]
    assert run.ctx.stopped_by == "confidence"


def test_fake_group_confidences_by_hand():
    assert group_confidences([1.0, 2.0, 3.0, 4.0], 2) == [1.5, 2.5, 3.5]
    assert group_confidences([1.0, 2.0], 4) == [1.5]
    assert percentile([4.0, 1.0, 3.0, 2.0], 25) == pytest.approx(1.75)


# -- token budget -----------------------------------------------------------------------------------
class AnyStep(dict):
    """Scores every step 0.5 (the budget tests do not care which candidate wins)."""

    def __missing__(self, key: str) -> float:
        return 0.5


def test_fake_token_budget_aborts_at_the_cap_and_ends_the_search():
    # online_bon with 3 candidates of 10 tokens per step and a budget of 25: step 1 spends 30 > 25?
    # No: the watcher aborts every running candidate as the 25th token arrives (rounds of 3 tokens:
    # round 9 brings tokens 25-27, the first of them hits the cap), so 25 tokens are spent in all
    # and the search ends with the best partial step.
    step = "abcdefghi" + D[0]  # 10 tokens, no delimiter end
    backend = FakeScriptedBackend({"": [Out(step, 0.5), Out(step + "x", 0.6), Out(step + "y", 0.7)]})
    run = run_strategy(
        "online_bon", backend, FakeScriptedScorer(AnyStep()), tts_candidates_per_step=3, tts_token_budget=25
    )
    assert run.ctx.completion_tokens == 25
    assert run.ctx.stopped_by == "budget"


def long_beam_script() -> dict[str, list[Out]]:
    """beam_search's script: every step is "abcd" + D (6 tokens) for each of 2 x 2 samples."""
    script = {"": [Out("abcd" + D)] * 4}
    prefix = ""
    for _ in range(12):
        prefix += "abcd" + D
        script[prefix] = [Out("abcd" + D)] * 4
    return script


@pytest.mark.parametrize("budget", [1, 7, 20, 33])
def test_fake_budget_aborts_exactly_at_the_cap_on_a_watched_backend(budget):
    # The budget is checked as each token arrives: the token that reaches it aborts every sample.
    backend = FakeScriptedBackend(long_beam_script())
    run = run_strategy(
        "beam_search",
        backend,
        FakeScriptedScorer(AnyStep()),
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_token_budget=budget,
    )
    assert run.ctx.stopped_by == "budget"
    assert run.ctx.completion_tokens == budget


@pytest.mark.parametrize("budget", [1, 7, 20, 33])
def test_fake_budget_without_watching_is_exceeded_by_at_most_one_step(budget):
    # A backend that cannot be watched is checked before each step only: a step (at most 2 x 2
    # samples of 6 tokens: 24) that starts under the budget runs to its end; the next never starts.
    engine = TTSEngine(FakeScriptedBackend(long_beam_script(), watching=False))
    config = TTSConfig.create(
        tts_strategy="beam_search", tts_beam_size=2, tts_candidates_per_step=2, tts_scorer="perplexity",
        tts_token_budget=budget,
    )  # fmt: skip
    meta = engine.run([{"role": "user", "content": QUESTION}], config).metadata
    assert meta.stopped_by == "budget"
    assert budget < meta.usage.completion_tokens <= budget + 24 - 1  # the step that crossed it, no more


def test_fake_budget_ends_a_search_through_the_engine_with_an_answer():
    script = {"": [Out("two plus three" + D)] * 2, "two plus three" + D: [Out(boxed("5"))] * 2}
    engine = TTSEngine(FakeScriptedBackend(script))
    result = engine.run(
        [{"role": "user", "content": "2+3?"}],
        TTSConfig.create(
            tts_strategy="online_bon", tts_candidates_per_step=2, tts_scorer="perplexity", tts_token_budget=20
        ),
    )
    assert result.metadata.stopped_by == "budget"
    assert result.metadata.usage.completion_tokens <= 20 + 2 * 16  # at most one more step's tokens
    assert result.text


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [
        ("tts_stop_confidence", 0.0),
        ("tts_stop_confidence", 1.0),
        ("tts_stop_confidence", 1.5),
        ("tts_token_budget", 0),
        ("tts_deepconf_percentile", -1),
        ("tts_deepconf_percentile", 100.5),
        ("tts_deepconf_warmup", 0),
        ("tts_confidence_window", 0),
    ],
)
def test_fake_bad_adaptive_input_is_a_typed_error(field, value):
    with pytest.raises(InvalidParameterError) as e:
        TTSConfig.create(**{field: value})
    assert e.value.param == field
