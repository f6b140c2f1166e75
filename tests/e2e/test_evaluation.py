"""llm-tts eval and rescore: bad input refused before anything runs, end to end on the embedded
model in-process and against a real service on loopback, resume after a killed run, re-scoring
that matches a fresh run, and the plots' series."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_tts.answers import answers_equivalent
from llm_tts.cli import main
from llm_tts.errors import DatasetError, InvalidParameterError, UnknownNameError
from llm_tts.evaluation import (
    InProcessSolver,
    ResultRow,
    ResultsStore,
    build_configurations,
    load_questions,
    rescore_row,
    rescore_trace,
    run_evaluation,
    summarize,
)
from llm_tts.evaluation.plots import plot_accuracy_vs_flops, plot_accuracy_vs_tokens, plot_reliability
from llm_tts.evaluation.progress import EvalProgress
from llm_tts.evaluation.records import is_correct
from llm_tts.evaluation.summary import bootstrap_interval, expected_calibration_error, format_table
from llm_tts.selection import auroc
from llm_tts.trace import load

SRC = Path(__file__).resolve().parents[2] / "src"
QUESTIONS = [
    {"id": "a", "question": "What is 2 + 3?", "answer": "5"},
    {"id": "b", "question": "What is 4 * 2?", "answer": "8"},
    {"id": "c", "question": "What is 9 - 6?", "answer": "3"},
]
SMALL = {"max_tokens": 24}
STRATEGIES = [
    "self_consistency",
    "offline_bon:tts_scorer=entropy",
    "beam_search:tts_scorer=perplexity,tts_candidates_per_step=2,tts_max_steps=3",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def selected_index(row: ResultRow) -> int:
    assert row.metadata is not None
    (index,) = [i for i, c in enumerate(row.metadata.candidates) if c.status == "selected"]
    return index


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# -- bad input: one clear error before anything runs (no model is loaded by these) -------------
def test_bad_data_is_refused_naming_the_file_or_row(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_questions(tmp_path / "missing.jsonl")
    rows = write_jsonl(tmp_path / "q.jsonl", [QUESTIONS[0], {"id": "x", "question": "What is 1 + 1?"}])
    with pytest.raises(DatasetError, match=r"q\.jsonl row 2: no answer field 'answer'"):
        load_questions(rows)
    assert [q.answer for q in load_questions(rows, answer_field="question")] == ["What is 2 + 3?", "What is 1 + 1?"]


def test_bad_configurations_are_typed_errors_naming_the_field():
    with pytest.raises(UnknownNameError, match="unknown strategy 'beam_serch'"):
        build_configurations(["beam_serch"], [1])
    with pytest.raises(UnknownNameError, match="tts_beam_sizee"):
        build_configurations(["beam_search:tts_beam_sizee=4"], [1])
    with pytest.raises(InvalidParameterError, match=r"tts_budget=17 .*tts_beam_size=17, which must be <= 16"):
        build_configurations(["beam_search"], [1, 17])
    names = [c.name for c in build_configurations(["beam_search:tts_scorer=entropy"], [1, 4])]
    assert names == ["greedy", "beam_search:tts_scorer=entropy@1", "beam_search:tts_scorer=entropy@4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "nope.jsonl"], "data file 'nope.jsonl' does not exist"),
        (["--strategies", "best_of_everything"], "unknown strategy 'best_of_everything'"),
        (["--strategies", "offline_bon:tts_scorer=oracle"], "unknown scorer 'oracle'"),
        (["--budgets", "0,2"], "budgets='0,2' is invalid"),
        (["--budgets", "65"], "tts_budget=65 is invalid"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    data = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    base = {"--data": str(data), "--out": str(tmp_path / "out")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["eval", *[x for kv in base.items() for x in kv], "--backend", "no-such-backend"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-tts eval: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# -- the results store and the progress display (no model) --------------------------------------
def test_progress_is_a_bar_on_a_terminal_and_log_lines_elsewhere():
    row = ResultRow(
        question_id="a",
        configuration="greedy",
        strategy="greedy",
        budget=None,
        seed=0,
        config={},
        gold="5",
        selected_answer="5",
        correct=True,
        seconds=0.1,
    )
    for terminal in (True, False):
        out = io.StringIO()
        progress = EvalProgress(2, stream=out, terminal=terminal)
        progress.update(row)
        progress.close()
        text = out.getvalue()
        assert "1/2 done" in text and "accuracy 1.000" in text and "ETA" in text
        assert text.startswith("\r[") if terminal else text.startswith("llm-tts eval: ")


def test_bootstrap_is_seeded_and_calibration_error_is_the_bin_gap():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    low, high = bootstrap_interval(values, seed=3)
    assert 0.0 <= low <= sum(values) / len(values) <= high <= 1.0
    # one bin: confidence 0.95 for all, half of them right -> |0.5 - 0.95|
    assert expected_calibration_error([(0.95, True), (0.95, False)]) == pytest.approx(0.45)


# -- end to end on the embedded model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tts_engine):
    """One in-process evaluation of three questions: greedy + three strategies x budgets 1, 2."""
    out = tmp_path_factory.mktemp("eval")
    questions = load_questions(write_jsonl(out / "q.jsonl", QUESTIONS))
    configurations = build_configurations(STRATEGIES, [1, 2], common=SMALL, seeds=[0])
    store = ResultsStore(out / "run")
    progress = EvalProgress(len(questions) * len(configurations), stream=io.StringIO(), terminal=False)
    rows = run_evaluation(
        questions, configurations, InProcessSolver(tts_engine), store, seeds=[0], concurrency=2, progress=progress
    )
    return store, rows, configurations


def test_in_process_run_records_every_candidate(evaluated):
    store, rows, configurations = evaluated
    assert len(rows) == 3 * len(configurations) == 3 * 7
    assert {r.key for r in store.rows()} == {(q["id"], c.name, 0) for q in QUESTIONS for c in configurations}
    for row in rows:
        md = row.metadata
        assert row.error is None and md is not None and md.candidates
        assert sum(c.status == "selected" for c in md.candidates) == 1
        assert all(c.num_tokens > 0 and c.finish_reason in ("stop", "length") for c in md.candidates)
        assert row.config["max_tokens"] == 24 and row.generated_tokens == md.usage.completion_tokens
        if row.strategy.startswith(("offline_bon", "beam_search")):
            assert all(len(c.step_scores) >= 1 and c.score is not None for c in md.candidates)
    greedy = [r for r in rows if r.configuration == "greedy"]
    assert all(r.config["temperature"] == 0.0 and len(r.metadata.candidates) == 1 for r in greedy)
    sizes = {r.configuration: len(r.metadata.candidates) for r in rows if r.strategy == "self_consistency"}
    assert sizes == {"self_consistency@1": 1, "self_consistency@2": 2}


def test_summary_and_plots_have_one_series_per_strategy(evaluated, tmp_path):
    _, rows, configurations = evaluated
    summaries = summarize(rows)
    assert [s.configuration for s in summaries] == [c.name for c in configurations]
    for s in summaries:
        assert s.questions == 3 and s.ci_low <= s.accuracy <= s.ci_high and s.mean_generated_tokens > 0
    fig = plot_accuracy_vs_tokens(summaries, tmp_path / "acc.png")
    (ax,) = fig.axes
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["greedy", *STRATEGIES]
    series = {bars.get_label(): bars.lines[0].get_data() for bars in ax.containers}  # one errorbar set per line
    assert list(series) == ["greedy", *STRATEGIES]
    for strategy in STRATEGIES:  # one point per budget, at the summary's tokens and accuracy
        points = [s for s in summaries if s.strategy == strategy]
        x, y = series[strategy]
        assert list(x) == [p.mean_generated_tokens for p in points] and list(y) == [p.accuracy for p in points]
    for s in summaries:  # every run on the local model knows its FLOPs
        runs = [r for r in rows if r.configuration == s.configuration]
        assert s.mean_flops == pytest.approx(sum(r.metadata.cost.flops for r in runs) / len(runs)) and s.mean_flops > 0
    fig = plot_accuracy_vs_flops(summaries, tmp_path / "flops.png")
    series = {bars.get_label(): bars.lines[0].get_data() for bars in fig.axes[0].containers}
    assert list(series) == ["greedy", *STRATEGIES]
    for strategy in STRATEGIES:
        assert list(series[strategy][0]) == [s.mean_flops for s in summaries if s.strategy == strategy]
    fig = plot_reliability(rows, tmp_path / "rel.png")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[0] == "perfect calibration" and len(labels) == 1 + len(STRATEGIES)
    assert all(" (ECE " in label for label in labels[1:])
    for name in ("acc.png", "flops.png", "rel.png"):
        width, height = png_size(tmp_path / name)
        assert width > 300 and height > 300


def test_summary_reports_each_scorers_auroc_from_the_recorded_candidates(evaluated):
    _, rows, _ = evaluated
    by_name = {s.configuration: s for s in summarize(rows)}
    for name, summary in by_name.items():
        scored, shares = [], []  # recomputed here from the candidates: (signal, its answer is right)
        for row in (r for r in rows if r.configuration == name and r.budget is not None):
            pool = [c for c in row.metadata.candidates if c.status != "pruned"]
            right = [c.answer is not None and is_correct(c.answer, row.gold) for c in pool]
            scored += [(c.score, ok) for c, ok in zip(pool, right) if c.score is not None]
            shares += [
                (sum(d.answer is not None and answers_equivalent(d.answer, c.answer) for d in pool) / len(pool), ok)
                if c.answer is not None
                else (0.0, False)
                for c, ok in zip(pool, right)
            ]
        expected = auroc([s for s, _ in scored], [ok for _, ok in scored]) if scored else None
        assert summary.score_auroc == expected
        assert summary.vote_share_auroc == (auroc([s for s, _ in shares], [ok for _, ok in shares]) if shares else None)
    assert by_name["self_consistency@2"].score_auroc is None  # the vote alone: no scorer ran
    assert by_name["greedy"].score_auroc is None and by_name["greedy"].vote_share_auroc is None
    assert "score AUROC" in format_table(list(by_name.values()))


def test_rescore_with_the_runs_settings_keeps_every_choice(evaluated):
    _, rows, _ = evaluated
    for row in rows:
        same = rescore_row(row, {})
        assert selected_index(same) == selected_index(row), row.configuration
        assert same.selected_answer == row.selected_answer and same.correct == row.correct
        assert same.metadata.aggregated_score == row.metadata.aggregated_score
        assert same.metadata.consensus_score == row.metadata.consensus_score


def test_every_row_keeps_its_trace_beside_it_and_the_trace_rescores_to_the_runs_choice(evaluated):
    store, rows, _ = evaluated
    assert all(r.metadata.trace is None for r in store.rows())  # the rows file stays small
    traces = load(store.directory)
    assert sorted((t.labels["question_id"], t.labels["configuration"]) for t in traces) == sorted(
        (r.question_id, r.configuration) for r in rows
    )
    by_key = {(r.question_id, r.configuration): r for r in rows}
    for trace in traces:
        row = by_key[trace.labels["question_id"], trace.labels["configuration"]]
        assert trace.labels["correct"] == row.correct and trace.run.answer == row.selected_answer
        selected = trace.node(trace.run.selected)
        assert selected.candidate == selected_index(row)
        assert rescore_trace(trace, {}) == trace.run.selected, row.configuration
    assert rescore_trace(traces[-1], {"tts_selection": "best"}) in {n.id for n in traces[-1].nodes}


def test_rescore_equals_a_fresh_run_with_the_new_settings(tts_engine, tmp_path):
    questions = load_questions(write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:2]))

    def run(strategy: str, out: str) -> list[ResultRow]:
        configurations = build_configurations([strategy], [4], common=SMALL, seeds=[5], greedy=False)
        progress = EvalProgress(2, stream=io.StringIO(), terminal=False)
        return run_evaluation(
            questions,
            configurations,
            InProcessSolver(tts_engine),
            ResultsStore(tmp_path / out),
            seeds=[5],
            progress=progress,
        )

    new = {"tts_score_aggregation": "last", "tts_selection": "weighted"}
    steps = 'offline_bon:tts_scorer=entropy,tts_step_delimiter=" "'  # a step per word: min and last differ
    original = run(f"{steps},tts_score_aggregation=min", "min")
    fresh = run(f"{steps},tts_score_aggregation=last,tts_selection=weighted", "last")
    changed = 0
    for old, redo in zip(sorted(original, key=lambda r: r.question_id), sorted(fresh, key=lambda r: r.question_id)):
        assert [c.text for c in old.metadata.candidates] == [c.text for c in redo.metadata.candidates]  # same samples
        rescored = rescore_row(old, new)
        changed += [c.score for c in rescored.metadata.candidates] != [c.score for c in old.metadata.candidates]
        assert selected_index(rescored) == selected_index(redo)
        assert rescored.metadata.aggregated_score == pytest.approx(redo.metadata.aggregated_score)
        assert rescored.metadata.consensus_score == redo.metadata.consensus_score
        assert rescored.selected_answer == redo.selected_answer and rescored.correct == redo.correct
    assert changed == 2  # the new settings really moved the scores
    with pytest.raises(UnknownNameError, match="temperature"):
        rescore_row(original[0], {"temperature": 0.5})


def test_cli_rescore_writes_a_new_folder_and_leaves_the_run_alone(evaluated, tmp_path, capsys):
    store, _, _ = evaluated
    before = store.path.read_bytes()
    assert (
        main(
            [
                "rescore",
                str(store.directory),
                "--aggregation",
                "mean",
                "--window-size",
                "2",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert store.path.read_bytes() == before
    rows = ResultsStore(tmp_path / "r").rows()
    assert len(rows) == len(store.rows())
    assert all(r.config["tts_score_aggregation"] == "mean" and r.config["tts_window_size"] == 2 for r in rows)
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {
        "summary.csv",
        "summary.json",
        "accuracy_vs_tokens.png",
        "accuracy_vs_flops.png",
        "reliability.png",
    }
    assert "| configuration |" in capsys.readouterr().out


def test_cli_against_a_real_service_on_loopback(service_url, tmp_path, capsys, tts_engine):
    data = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    out = tmp_path / "out"
    argv = [
        "eval",
        "--data",
        str(data),
        "--out",
        str(out),
        "--base-url",
        f"{service_url}/v1",
        "--limit",
        "2",
        "--strategies",
        "self_consistency",
        "--budgets",
        "2",
        "--max-tokens",
        "16",
        "--concurrency",
        "2",
    ]
    assert main(argv) == 0
    rows = ResultsStore(out).rows()
    assert sorted(r.key for r in rows) == sorted(
        (q, c, 0) for q in ("a", "b") for c in ("greedy", "self_consistency@2")
    )
    assert all(r.metadata.backend == "transformers" and r.error is None for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert [s["configuration"] for s in summary] == ["greedy", "self_consistency@2"]
    png_size(out / "accuracy_vs_tokens.png")
    # the same greedy request in-process gives the same answer: one engine behind both faces
    local = build_configurations([], [1], common={"max_tokens": 16}, seeds=[0])
    progress = EvalProgress(2, stream=io.StringIO(), terminal=False)
    questions = load_questions(data, limit=2)
    here = run_evaluation(
        questions, local, InProcessSolver(tts_engine), ResultsStore(tmp_path / "here"), seeds=[0], progress=progress
    )
    remote = {r.question_id: r.metadata.candidates[0].text for r in rows if r.configuration == "greedy"}
    assert {r.question_id: r.metadata.candidates[0].text for r in here} == remote
    assert main(argv) == 0  # everything done: nothing runs again, nothing is duplicated
    assert len(ResultsStore(out).rows()) == len(rows)


# -- resume after a killed process -----------------------------------------------------------------------
def test_resume_after_a_killed_run_loses_and_duplicates_nothing(tmp_path, embedded_model_dir):
    questions = [{"question": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(1, 9)]
    data = write_jsonl(tmp_path / "q.jsonl", questions)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    argv = [
        sys.executable,
        "-m",
        "llm_tts.cli",
        "eval",
        "--data",
        str(data),
        "--out",
        str(out),
        "--backend",
        "transformers",
        "--strategies",
        "self_consistency",
        "--budgets",
        "1",
        "--max-tokens",
        "16",
        "--concurrency",
        "1",
        "--no-plots",
    ]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        give_up = time.monotonic() + 300
        while not (results.exists() and results.read_bytes().count(b"\n") >= 3):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < give_up
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    kept = results.read_bytes()
    assert 3 <= kept.count(b"\n") < 16  # killed mid-run
    with open(results, "ab") as f:  # what a kill in the middle of a write leaves behind
        f.write(b'{"question_id": "7", "configuration": "gre')
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    done_before = kept.count(b"\n")
    first = next(line for line in finished.stderr.splitlines() if " done | " in line)
    assert first.startswith(f"llm-tts eval: {done_before + 1}/16 done")  # progress counts what was done
    after = results.read_bytes()
    assert after.startswith(kept)  # every row of the killed run is still there, untouched
    rows = ResultsStore(out).rows()
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)) == 16
    assert set(keys) == {(str(i), c, 0) for i in range(1, 9) for c in ("greedy", "self_consistency@1")}
    assert all(json.loads(line) for line in after.splitlines())  # the torn write is gone
