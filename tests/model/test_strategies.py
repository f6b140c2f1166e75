"""Every strategy x scorer end to end on the embedded model, batching, limits and bad input.

Sizes are tiny (2 paths, beams 2 x 2, 2 steps, a few tokens) so the whole file takes a couple
of minutes on two CPU cores. ``CountingBackend`` is not a mock: it forwards every call to the
real transformers backend and only records what the strategy asked for.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from llm_tts.answers import answers_equivalent
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import (
    CapabilityError,
    ContextLengthError,
    EmptyMessagesError,
    InvalidParameterError,
    RunCancelledError,
    UnknownNameError,
)
from llm_tts.messages import coerce_messages
from llm_tts.progress import RunControl
from llm_tts.strategies import fields_for

MESSAGES = [
    {
        "role": "system",
        "content": "Reason step by step, separating steps with a blank line, and put the final answer in \\boxed{}.",
    },
    {"role": "user", "content": "What is 2 + 3?"},
]
STRATEGIES = ["self_consistency", "offline_bon", "online_bon", "beam_search", "dvts", "particle_filtering"]
STEP_SCORERS = ["entropy", "perplexity", "sequence_prob", "llm_judge", "prm"]
SMALL = dict(
    num_paths=2,
    tts_num_trajectories=2,
    tts_beam_size=2,
    tts_candidates_per_step=2,
    tts_max_steps=2,
    tts_num_subtrees=2,
    tts_num_particles=2,
    tts_step_max_tokens=8,
    max_tokens=16,
    seed=0,
)


class CountingBackend:
    """The real backend, recording each generate call; capabilities may be narrowed."""

    def __init__(self, inner: Any, **capabilities: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int, int]] = []  # (prompts, n, max_tokens)
        self.name, self.model_name = inner.name, inner.model_name
        self.max_context_tokens = inner.max_context_tokens
        self.capabilities = dataclasses.replace(inner.capabilities, **capabilities)

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params.n, params.max_tokens))
        return self.inner.generate(prompts, params)

    def __getattr__(self, name: str) -> Any:  # render_chat, decode, token_texts, close
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def engine(hf_backend, tiny_prm_dir):
    return TTSEngine(hf_backend, prm_model=str(tiny_prm_dir))


@pytest.fixture
def counting(hf_backend):
    backend = CountingBackend(hf_backend)
    return backend, TTSEngine(backend)


def _config(**fields: Any) -> TTSConfig:
    strategy = fields.get("tts_strategy", "self_consistency")
    return TTSConfig.create(**fields_for(strategy, {**SMALL, **fields}))  # one set of sizes for every strategy


COMBOS = [("self_consistency", "majority_vote")] + [(s, sc) for s in STRATEGIES for sc in STEP_SCORERS]


@pytest.mark.parametrize("strategy, scorer", COMBOS)
def test_every_strategy_with_every_scorer(engine, hf_backend, strategy, scorer):
    events = []
    result = engine.run(MESSAGES, _config(tts_strategy=strategy, tts_scorer=scorer), progress=events.append)
    md = result.metadata
    assert (md.strategy, md.scorer) == (strategy, scorer)
    assert (md.backend, md.model) == (hf_backend.name, hf_backend.model_name)
    selected = [c for c in md.candidates if c.status == "selected"]
    assert len(selected) == 1 and selected[0].text == result.text == result.trajectory.text
    assert result.finish_reason == selected[0].finish_reason
    # every strategy but online_bon votes: self_consistency by count, the others by summed scores
    # (tts_selection="weighted", the default); the vote reports its group's first form of the answer
    # (checked whether or not the model stated an answer: with none, the vote has none either)
    votes = strategy != "online_bon"
    if not votes or selected[0].answer is None:
        assert md.selected_answer == selected[0].answer
    else:
        assert answers_equivalent(md.selected_answer, selected[0].answer)
    assert md.reasoning_steps >= 1
    # usage from real token ids
    prompt = len(hf_backend.render_chat(coerce_messages(MESSAGES)))
    assert md.usage.prompt_tokens == prompt == len(result.trajectory.prompt_token_ids)
    assert md.usage.total_tokens == md.usage.prompt_tokens + md.usage.completion_tokens
    assert md.usage.completion_tokens >= max(c.num_tokens for c in md.candidates)
    assert all(1 <= c.num_tokens <= SMALL["max_tokens"] for c in md.candidates)
    assert selected[0].num_tokens == len(result.trajectory.completion_token_ids)
    assert md.timings.total_s >= md.timings.generation_s > 0
    assert events and events[-1].strategy == strategy
    if scorer == "majority_vote":
        assert md.aggregated_score is None
    else:
        assert 0.0 <= md.aggregated_score <= 1.0  # every built-in scorer is probability-like
        assert len(selected[0].step_scores) == md.reasoning_steps
        assert md.timings.scoring_s > 0
    if votes:
        assert md.consensus_score is not None and md.uncertainty_score == pytest.approx(1 - md.consensus_score)
        assert md.answer_distribution is not None
        assert (md.selected_answer in md.answer_distribution) == (md.selected_answer is not None)
        assert (md.consensus_score > 0) == bool(md.answer_distribution)  # no answer stated: no consensus
    else:
        assert md.consensus_score is md.uncertainty_score is md.answer_distribution is None
    if strategy == "self_consistency":
        assert sum(md.answer_distribution.values()) <= SMALL["num_paths"]
        assert len(md.candidates) == SMALL["num_paths"]
    if strategy == "beam_search":
        assert all(e.live_beams <= SMALL["tts_beam_size"] for e in events)
        assert any(c.status == "pruned" for c in md.candidates)  # 4 candidates per step, 2 beams kept
    if strategy == "dvts":
        assert sum(c.status != "pruned" for c in md.candidates) == SMALL["tts_num_subtrees"]  # one leaf per subtree
    if strategy == "particle_filtering":
        assert all(c.resampled is not None for c in md.candidates)
    else:
        assert all(c.resampled is None for c in md.candidates)


@pytest.mark.parametrize(
    "strategy, expected_first_call",
    [
        ("self_consistency", (1, 2)),  # one call: 1 prompt, n = num_paths
        ("offline_bon", (1, 2)),  # one call: 1 prompt, n = tts_num_trajectories
        ("online_bon", (1, 2)),  # each step: 1 prompt, n = tts_candidates_per_step
        ("beam_search", (1, 4)),  # first step: the prompt, n = beam_size * candidates_per_step
        ("dvts", (1, 4)),  # first step: the prompt, n = subtrees * candidates_per_step
        ("particle_filtering", (1, 2)),  # first step: the prompt, n = particles
    ],
)
def test_every_candidate_of_a_step_is_one_generate_call(counting, strategy, expected_first_call):
    backend, eng = counting
    events = []
    eng.run(MESSAGES, _config(tts_strategy=strategy, tts_scorer="perplexity"), progress=events.append)
    assert backend.calls[0][:2] == expected_first_call
    assert len(backend.calls) == len(events)  # one backend call per step, whatever the beams
    if strategy == "beam_search":
        for (prompts, n, _), before in zip(backend.calls[1:], events):
            assert (prompts, n) == (before.live_beams, 2)  # all live beams, together, in one call


@pytest.mark.parametrize(
    "strategy, budget, per_step, expected_n",
    [
        ("self_consistency", 3, 1, 3),
        ("offline_bon", 3, 1, 3),
        ("online_bon", 3, 1, 3),
        ("beam_search", 3, 1, 3),
        ("dvts", 7, 2, 6),  # 7 // 2 = 3 subtrees of 2 candidates (not 7 subtrees: 14)
        ("particle_filtering", 3, 1, 3),
    ],
)
def test_budget_maps_onto_the_main_size(counting, strategy, budget, per_step, expected_n):
    backend, eng = counting
    cfg = _config(
        tts_strategy=strategy,
        tts_scorer="perplexity",
        tts_budget=budget,
        tts_candidates_per_step=per_step,
        tts_max_steps=1,
        max_tokens=4,
    )
    eng.run(MESSAGES, cfg)
    assert backend.calls[0][1] == expected_n


def test_seed_makes_runs_reproducible(engine):
    cfg = _config(tts_strategy="beam_search", tts_scorer="entropy", seed=7, temperature=1.0)
    a, b = engine.run(MESSAGES, cfg), engine.run(MESSAGES, cfg)
    assert a.text == b.text
    assert [c.text for c in a.metadata.candidates] == [c.text for c in b.metadata.candidates]
    assert a.metadata.aggregated_score == b.metadata.aggregated_score


def test_max_tokens_bounds_trajectories_and_cut_steps_are_marked(counting):
    backend, eng = counting
    cfg = _config(
        tts_strategy="beam_search", tts_scorer="perplexity", tts_step_max_tokens=4, max_tokens=6, tts_max_steps=3
    )
    md = eng.run(MESSAGES, cfg).metadata
    assert all(c.num_tokens <= 6 for c in md.candidates)
    # 4-token steps rarely reach a blank line: they are marked as cut, not passed off as steps.
    assert any(c.truncated_steps >= 1 for c in md.candidates)
    assert any(c.finish_reason == "length" for c in md.candidates if c.status != "pruned")
    # Later steps ask only for what is left of the longest beam's budget.
    assert backend.calls[0][2] == 4 and all(mt <= 6 - 1 for _, _, mt in backend.calls[1:])


def test_cancel_between_steps_stops_the_search(counting):
    backend, eng = counting
    control = RunControl()

    def cancel_after_first_step(event):
        control.cancel()

    with pytest.raises(RunCancelledError):
        eng.run(
            MESSAGES,
            _config(tts_strategy="online_bon", tts_max_steps=5),
            progress=cancel_after_first_step,
            control=control,
        )
    assert len(backend.calls) == 1


def test_weighted_best_of_n_reports_the_vote(engine):
    md = engine.run(
        MESSAGES,
        _config(
            tts_strategy="offline_bon",
            tts_scorer="perplexity",
            tts_selection="weighted",
            tts_num_trajectories=3,
            max_tokens=24,
        ),
    ).metadata
    assert md.answer_distribution is not None and md.consensus_score is not None
    # Every trajectory votes: the distribution counts those that stated an answer, and the
    # winner's share is of all three (0 when none stated one).
    assert sum(md.answer_distribution.values()) == sum(c.answer is not None for c in md.candidates)
    winners = md.answer_distribution.get(md.selected_answer, 0) if md.selected_answer is not None else 0
    assert md.consensus_score == pytest.approx(winners / 3)


def test_a_fitted_selector_picks_the_answer_and_reports_its_probability(engine):
    from pathlib import Path

    from llm_tts.selection import load_selector, signals_of_info

    path = Path(__file__).resolve().parents[1] / "data" / "selector.json"
    config = _config(tts_strategy="offline_bon", tts_scorer="self_certainty", tts_num_trajectories=3, max_tokens=32)
    md = engine.run(MESSAGES, config.merged(tts_selector=str(path))).metadata
    picked = load_selector(path).select([signals_of_info(c) for c in md.candidates])
    if picked is None:  # no trajectory stated an answer: the weighted vote chose, with no confidence
        assert md.confidence is None
    else:
        assert md.selected_answer == picked.answer and md.confidence == pytest.approx(picked.confidence)
        assert md.candidates[picked.index].status == "selected"
        assert md.consensus_score == pytest.approx(picked.share)


def test_a_routed_run_with_generative_selection_reports_its_route_and_picks(engine):
    # threshold 1.0: it escalates unless both first paths agree; genselect runs when answers differ
    config = TTSConfig.create(
        tts_route=[2, 3], tts_route_threshold=1.0, tts_genselect=1, max_tokens=16, temperature=1.0
    )
    md = engine.run(MESSAGES, config).metadata
    route = md.route
    assert route is not None and route.signal == "vote_share" and route.sizes == [2, 3]
    assert [s.size for s in route.stages] == [2, 3][: len(route.stages)] and len(md.candidates) == route.stages[-1].size
    assert route.stopped == ("confident" if len(route.stages) == 1 else "largest")
    assert route.stages[-1].completion_tokens == sum(c.num_tokens for c in md.candidates)  # before any picks
    answers = {c.answer for c in md.candidates if c.answer is not None}
    if len(answers) < 2:  # nothing to choose between: the vote decided, no picks were asked for
        assert md.selection is None and md.usage.completion_tokens == route.stages[-1].completion_tokens
    else:
        assert md.selection.picks == md.selection.rounds and md.selection.answers == len(answers)
        assert md.usage.completion_tokens > route.stages[-1].completion_tokens  # the picks' tokens count
        assert md.selected_answer in answers


def test_run_from_a_worker_thread(engine):
    out: dict[str, Any] = {}

    def work():
        try:
            out["result"] = engine.run(MESSAGES, _config(num_paths=2, max_tokens=12))
        except Exception as e:  # noqa: BLE001  (recorded, then asserted on the main thread)
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join(300)
    assert "error" not in out, out.get("error")
    assert out["result"].metadata.strategy == "self_consistency"


# -- bad input: typed errors, nothing generated ------------------------------------------------
BAD = [
    (
        dict(tts_strategy="tree_search"),
        UnknownNameError,
        ["tree_search", "beam_search", "offline_bon", "online_bon", "self_consistency"],
    ),
    (
        dict(tts_scorer="bleu"),
        UnknownNameError,
        ["bleu", "entropy", "llm_judge", "majority_vote", "perplexity", "prm", "sequence_prob"],
    ),
    (
        dict(tts_strategy="beam_search", tts_scorer="majority_vote"),
        InvalidParameterError,
        ["majority_vote", "self_consistency", "entropy"],
    ),
    (
        dict(tts_strategy="beam_search", tts_budget=17),
        InvalidParameterError,
        ["tts_budget", "17", "16", "tts_beam_size"],
    ),
    (dict(tts_budget=65), InvalidParameterError, ["tts_budget", "65", "64", "num_paths"]),
]


@pytest.mark.parametrize("fields, error, named", BAD)
def test_bad_config_is_a_typed_error_before_generation(counting, fields, error, named):
    backend, eng = counting
    cfg = _config(**fields)
    for call in (lambda: eng.validate(MESSAGES, cfg), lambda: eng.run(MESSAGES, cfg)):
        with pytest.raises(error) as info:
            call()
        assert all(word in str(info.value) for word in named), str(info.value)
    assert backend.calls == []


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(tts_score_aggregation="median"), ["tts_score_aggregation", "median"]),
        (dict(num_paths=0), ["num_paths", "0"]),
        (dict(tts_beam_size=17), ["tts_beam_size", "17", "16"]),
        (dict(tts_candidates_per_step=0), ["tts_candidates_per_step"]),
        (dict(tts_max_steps=201), ["tts_max_steps", "200"]),
        (dict(tts_window_size=0), ["tts_window_size"]),
    ],
)
def test_out_of_range_sizes_are_typed_errors(fields, named):
    with pytest.raises(InvalidParameterError) as info:
        TTSConfig.create(**fields)
    assert all(word in str(info.value) for word in named), str(info.value)


def test_empty_messages_and_oversized_prompt_are_typed_errors(counting):
    backend, eng = counting
    with pytest.raises(EmptyMessagesError):
        eng.run([], _config())
    huge = [{"role": "user", "content": "two " * (backend.max_context_tokens + 10)}]
    with pytest.raises(ContextLengthError) as info:
        eng.run(huge, _config())
    assert str(backend.max_context_tokens) in str(info.value)
    assert backend.calls == []


def test_prm_without_a_model_is_refused_before_generating(counting, monkeypatch):
    monkeypatch.delenv("PRM_MODEL_PATH", raising=False)
    backend, eng = counting
    cfg = _config(tts_strategy="beam_search", tts_scorer="prm")
    for call in (eng.validate, eng.run):
        with pytest.raises(CapabilityError) as info:
            call(MESSAGES, cfg)
        assert "prm" in str(info.value)
    assert backend.calls == []


def test_a_candidate_cut_by_a_limit_votes_only_with_an_answer_it_stated():
    from llm_tts.strategies import Beam
    from llm_tts.types import Segment, Trajectory

    def beam(text: str, finish_reason: str) -> Beam:
        seg = Segment(token_ids=(1,), text=text, finish_reason="length" if finish_reason == "length" else "eos")
        return Beam(Trajectory((0,), (seg,)), finished=True, finish_reason=finish_reason)

    assert beam("we add them: the sum of the sum of 7", "length").answer is None  # not "7"
    assert beam("7 + 7 = 14, so the answer is 14. Let us also check", "length").answer == "14"
    assert beam("the sum of 7 and 7 is 14", "stop").answer == "14"
