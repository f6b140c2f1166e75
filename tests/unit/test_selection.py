"""Selection by a fitted selector, without a model: answer features, AUROC, the selector file (plain
JSON, bad files refused with typed errors), fitting on recorded rows (scikit-learn), and the
strategies choosing with ``tts_selector`` on a FAKE scripted backend."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fakes import ASSISTANT, FakeScriptedBackend, FakeScriptedScorer, Out, run_strategy
from llm_tts.cli import main
from llm_tts.errors import DatasetError, InvalidParameterError
from llm_tts.evaluation import ResultRow, ResultsStore
from llm_tts.evaluation.selector_fit import fit_selector_directory
from llm_tts.metadata import CandidateInfo, TTSMetadata
from llm_tts.planning import resolve_config
from llm_tts.selection import (
    FEATURE_NAMES,
    CandidateSignals,
    Selector,
    answer_features,
    auroc,
    load_selector,
)
from llm_tts.strategies.genselect import PICK_PREFIX


def test_auroc_is_the_share_of_right_wrong_pairs_ordered_with_ties_counting_half():
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [True, True, False]) == 0.0
    # pairs (right, wrong): (0.5, 0.5) tie = 0.5, (0.5, 0.2) = 1, (0.7, 0.5) = 1, (0.7, 0.2) = 1
    assert auroc([0.5, 0.7, 0.5, 0.2], [True, True, False, False]) == pytest.approx(3.5 / 4)
    assert auroc([0.3, 0.4], [True, True]) is None  # nothing wrong to tell apart


def test_answer_features_of_a_run():
    cands = [
        CandidateSignals("5", 0.9, 10, True),
        CandidateSignals("7", 0.3, 20, False),
        CandidateSignals("5.0", 0.5, 30, True),  # equivalent to 5
        CandidateSignals(None, None, 40, False),
    ]
    five, seven = answer_features(cands)
    assert (five.answer, five.members, seven.members) == ("5", (0, 2), (1,))
    f = five.as_dict()
    assert list(f) == list(FEATURE_NAMES)
    assert f["vote_share"] == 0.5 and f["vote_margin"] == 0.25 and f["is_plurality"] == 1.0
    assert f["answers_share"] == 0.5
    assert f["score_mean"] == pytest.approx(0.7) and f["score_max"] == 0.9 and f["score_min"] == 0.5
    assert f["score_share"] == pytest.approx(1.4 / 1.7) and f["has_scores"] == 1.0
    assert f["length_ratio"] == pytest.approx(20 / 40) and f["finished_share"] == 1.0
    g = seven.as_dict()
    assert g["vote_margin"] == -0.25 and g["is_plurality"] == 0.0 and g["finished_share"] == 0.0
    assert answer_features([CandidateSignals(None, 0.5, 3, True)]) == []


def selector_json(**coefficients: float) -> dict:
    """A hand-written selector: P(right) = sigmoid(intercept + sum c * feature), no scaling."""
    names = list(coefficients)
    return {
        "format": "llm-tts-selector",
        "version": 1,
        "model": "logistic",
        "features": names,
        "mean": [0.0] * len(names),
        "scale": [1.0] * len(names),
        "coefficients": list(coefficients.values()),
        "intercept": -1.0,
    }


def test_selector_round_trips_through_plain_json_and_picks_by_probability(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(selector_json(score_max=4.0)))
    selector = load_selector(path)
    cands = [
        CandidateSignals("5", 0.2, 5, True),
        CandidateSignals("5", 0.1, 5, True),
        CandidateSignals("7", 0.9, 5, True),
    ]
    picked = selector.select(cands)
    assert picked is not None and (picked.index, picked.answer) == (2, "7")  # the minority answer, better scored
    assert picked.confidence == pytest.approx(1 / (1 + math.exp(-(-1.0 + 4.0 * 0.9))))
    assert picked.share == pytest.approx(1 / 3)
    selector.save(tmp_path / "again.json")
    identity = {"version": 2, "confidence_calibration": {"method": "none"}}  # absent: P(right) itself
    assert json.loads((tmp_path / "again.json").read_text()) == {**json.loads(path.read_text()), **identity}


@pytest.mark.parametrize(
    "content, why",
    [
        ("not json", "not readable JSON"),
        (json.dumps({"format": "pickle"}), "format"),
        (json.dumps({**selector_json(vote_share=1.0), "features": ["vibes"]}), "features"),
        (json.dumps({**selector_json(vote_share=1.0), "coefficients": [float("nan")]}), "coefficients"),
        (json.dumps({**selector_json(vote_share=1.0), "scale": [0.0]}), "scale"),
        (json.dumps({**selector_json(vote_share=1.0), "intercept": "high"}), "intercept"),
        (json.dumps({**selector_json(vote_share=1.0), "confidence_calibration": {"slope": 1}}), "calibration"),
    ],
)
def test_a_bad_selector_file_is_a_typed_error_naming_tts_selector(tmp_path, content, why):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidParameterError, match=why) as err:
        load_selector(path)
    assert err.value.param == "tts_selector"
    with pytest.raises(InvalidParameterError):  # refused when the request is planned, before any run
        resolve_config({"tts_strategy": "offline_bon", "tts_selector": str(path)})
    with pytest.raises(InvalidParameterError, match="no readable selector file"):
        load_selector(tmp_path / "missing.json")


# -- on a FAKE scripted backend: the strategies choose with the selector --------------------------
def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


@pytest.mark.parametrize("strategy", ["self_consistency", "offline_bon"])
def test_fake_strategy_with_a_selector_returns_its_answer_and_confidence(tmp_path, strategy):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(selector_json(score_max=4.0)))
    paths = [Out(boxed(5), 0.5), Out(boxed(7), 0.5), Out(boxed(5), 0.5)]
    scorer = FakeScriptedScorer({boxed(5): 0.4, boxed(7): 0.7})
    size = {"num_paths": 3} if strategy == "self_consistency" else {"tts_num_trajectories": 3}
    run = run_strategy(strategy, FakeScriptedBackend({"": paths}), scorer, tts_selector=str(path), **size)
    assert run.outcome.selected.answer == "7"  # the vote (and the weighted vote: 0.8 > 0.7) would say 5
    assert [s for _, s in run.statuses()] == ["kept", "selected", "kept"]
    assert run.ctx.confidence == pytest.approx(1 / (1 + math.exp(-(-1.0 + 4.0 * 0.7))))
    assert run.outcome.vote.distribution == {"5": 2, "7": 1} and run.outcome.vote.consensus == pytest.approx(1 / 3)
    plain = run_strategy(strategy, FakeScriptedBackend({"": paths}), scorer, **size)
    assert plain.outcome.selected.answer == "5" and plain.ctx.confidence is None


# -- fitting on recorded rows ------------------------------------------------------------------------
def recorded_rows(count: int) -> list[ResultRow]:
    """Runs of three candidates where the best-scored answer is right and the majority is not
    on every third question (a selector reading scores beats the vote there), and none is right
    on one question in ten."""
    rows = []
    rng = np.random.default_rng(0)
    for q in range(count):
        minority_right = q % 3 == 0
        right, wrong = "4", "9"
        high, low = float(rng.uniform(0.7, 0.95)), float(rng.uniform(0.1, 0.4))
        if q % 10 == 5:  # nothing right: the picked answer is wrong whatever the rule
            cands = [(wrong, high), (wrong, high), ("7", low)]
        elif minority_right:
            cands = [(wrong, low), (wrong, low), (right, high)]
        else:
            cands = [(right, high), (right, high), (wrong, low)]
        infos = [
            CandidateInfo(text=boxed(a), answer=a, score=s, status="kept", num_tokens=10 + i)
            for i, (a, s) in enumerate(cands)
        ]
        infos[0] = infos[0].model_copy(update={"status": "selected"})
        md = TTSMetadata(strategy="offline_bon", scorer="entropy", candidates=infos, backend="vllm", model="m")
        rows.append(
            ResultRow(
                question_id=f"q{q}",
                configuration="offline_bon@3",
                strategy="offline_bon",
                budget=3,
                seed=0,
                config={},
                gold=right,
                selected_answer=cands[0][0],
                correct=cands[0][0] == right,
                seconds=0.1,
                metadata=md,
            )
        )
    return rows


def test_fit_selector_learns_from_recorded_runs_and_reports_held_out_numbers(tmp_path, capsys):
    ResultsStore(tmp_path / "run").rewrite(recorded_rows(60))
    out = tmp_path / "selector.json"
    assert main(["fit-selector", str(tmp_path / "run"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out: 18 runs" in printed and "selector_accuracy" in printed
    data = json.loads(out.read_text())  # plain JSON: nothing in it runs code
    assert data["format"] == "llm-tts-selector" and data["features"] == list(FEATURE_NAMES)
    assert data["fitted_on"]["questions"] == 42 and data["fitted_on"]["scorers"] == ["entropy"]
    report = data["validation"]
    assert report["auroc"] > report["vote_share_auroc"]  # scores tell right answers apart here; votes do not
    assert report["selector_accuracy"] > report["vote_accuracy"]
    assert (tmp_path / "selector.reliability.png").stat().st_size > 1000
    selector = Selector.from_json(data)
    assert selector.info["validation"] == report
    assert selector.calibration.to_json() == data["confidence_calibration"]
    assert data["confidence_calibration"]["method"] == "isotonic"  # the picks' confidence was fitted


def test_fit_selector_refuses_too_little_data_with_a_typed_error(tmp_path, capsys):
    ResultsStore(tmp_path / "run").rewrite(recorded_rows(2))
    with pytest.raises(DatasetError):
        fit_selector_directory(tmp_path / "run", tmp_path / "s.json", plot=False)
    assert main(["fit-selector", str(tmp_path / "empty"), "--out", str(tmp_path / "s.json")]) == 2
    assert "llm-tts fit-selector:" in capsys.readouterr().err


def test_fit_selector_gbm_exports_plain_json_trees_and_isotonic_calibration(tmp_path):
    ResultsStore(tmp_path / "run").rewrite(recorded_rows(60))
    out = tmp_path / "gbm.json"
    fitted, report = fit_selector_directory(tmp_path / "run", out, plot=False, model="gbm", calibration="isotonic")
    data = json.loads(out.read_text())
    assert data["model"] == "gbm" and data["version"] == 2 and len(data["trees"]) > 1
    assert data["confidence_calibration"]["method"] == "isotonic"
    loaded = load_selector(out)  # applied with numpy from the JSON alone: the same probabilities
    answers = answer_features([CandidateSignals("4", 0.2, 5, True), CandidateSignals("9", 0.9, 5, True)])
    assert loaded.probabilities(answers) == pytest.approx(fitted.probabilities(answers))
    assert report["auroc"] > report["vote_share_auroc"]
    assert 0.0 <= loaded.confidence(0.3) <= loaded.confidence(0.9) <= 1.0  # isotonic: never decreasing
    bad = {**data, "trees": [{**data["trees"][0], "left": [5] + data["trees"][0]["left"][1:]}]}
    with pytest.raises(InvalidParameterError, match="children"):
        Selector.from_json(bad)  # a tree whose node points outside (or back into) itself is refused


# -- generative selection and routing on a FAKE scripted backend -----------------------------------
def test_genselect_parses_a_pick_robustly():
    from llm_tts.strategies.genselect import parse_pick

    assert parse_pick("Solution 3", 3) == 2 and parse_pick("solution #2 is right", 3) == 1
    assert parse_pick("#1.", 2) == 0 and parse_pick("I think it is 2.", 2) == 1
    assert parse_pick("Solution 9", 3) is None and parse_pick("2.5", 3) is None and parse_pick("none", 3) is None


# the fake renders the pre-filled reply as a turn of its own: the picks continue after it
PICKS = PICK_PREFIX + "\n" + ASSISTANT
CONTEXT = 500  # room for the prompt of two of the tournament test's solutions, not of three


def test_fake_genselect_picks_the_models_choice_over_the_majority_and_falls_back_to_the_vote():
    paths = ["\\boxed{5}", "\\boxed{5}", "\\boxed{7}"]
    picks = [" 2", " 2.", "Solution 1", "Solution 2"]  # the second answer shown (7), three times of four
    run = run_strategy(
        "self_consistency", FakeScriptedBackend({"": paths, PICKS: picks}), None, num_paths=3, tts_genselect=4
    )
    info = run.ctx.selection_info
    assert run.outcome.selected.answer == "7" and run.outcome.vote.distribution == {"5": 2, "7": 1}
    assert info.picks == 4 and info.malformed == 0 and not info.fallback and info.rounds == 1
    assert info.votes == {"7": 3, "5": 1}
    assert run.ctx.completion_tokens == sum(map(len, paths)) + sum(map(len, picks))  # the picks count

    unparsable = {"": paths, PICKS: [" none", " 9"]}  # no number, and no solution 9 of two: malformed
    run = run_strategy("self_consistency", FakeScriptedBackend(unparsable), None, num_paths=3, tts_genselect=2)
    assert run.outcome.selected.answer == "5" and run.ctx.selection_info.fallback  # the vote decided
    assert run.ctx.selection_info.malformed == 2


def test_fake_genselect_runs_a_tournament_when_the_answers_do_not_fit_at_once():
    paths = [f"It is {n}: \\boxed{{{n}}}" + "." * 60 for n in (3, 4, 5, 6)]
    backend = FakeScriptedBackend({"": paths, PICKS: [" 2"]}, max_context_tokens=CONTEXT)  # two fit, not three
    run = run_strategy("self_consistency", backend, None, num_paths=4, tts_genselect=1)
    info = run.ctx.selection_info
    assert info.rounds == 2 and info.answers == 4 and info.picks == 3 and not info.fallback
    assert run.outcome.selected.answer == "6"  # the second of each pair wins each round: 4, 6, then 6


def test_fake_route_stops_when_confident_and_escalates_when_not():
    agree = ["\\boxed{5}"] * 4
    run = run_strategy("self_consistency", FakeScriptedBackend({"": agree}), None, tts_route=[2, 4])
    route = run.ctx.route_info
    assert [s.size for s in route.stages] == [2] and route.stopped == "confident" and route.signal == "vote_share"
    assert len(run.outcome.candidates) == 2 and route.stages[0].confidence == 1.0

    split = ["\\boxed{5}", "\\boxed{7}", "\\boxed{5}", "\\boxed{5}"]
    run = run_strategy("self_consistency", FakeScriptedBackend({"": split}), None, tts_route=[2, 4])
    route = run.ctx.route_info
    assert [s.size for s in route.stages] == [2, 4] and route.stopped == "largest"
    assert [s.confidence for s in route.stages] == [0.5, 0.5] and run.outcome.selected.answer == "5"
