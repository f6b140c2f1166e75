"""``llm-tts eval``, ``llm-tts rescore`` and ``llm-tts fit-selector``: flags, checks before anything runs, then the run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from llm_tts.errors import InvalidParameterError, LLMTTSError
from llm_tts.evaluation.records import ResultRow

DEFAULT_STRATEGIES = ["self_consistency", "offline_bon", "beam_search"]
API_KEY_ENV = "LLM_TTS_API_KEY"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="JSONL file with one question per line, or 'arithmetic' (shipped set)"
    )
    parser.add_argument(
        "--out", required=True, help="folder for results.jsonl, summary.csv/json and plots (resumes if it exists)"
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=DEFAULT_STRATEGIES,
        metavar="STRATEGY[:FIELD=VALUE,...]",
        help="strategies to compare, each with its own TTS fields, e.g. beam_search:tts_beam_size=4,tts_scorer=entropy "
        f"(default: {' '.join(DEFAULT_STRATEGIES)}); greedy (temperature 0, one path) is added as the baseline",
    )
    parser.add_argument("--no-greedy", action="store_true", help="do not add the greedy baseline")
    parser.add_argument("--budgets", default="1,2,4,8", help="tts_budget values, comma-separated (default 1,2,4,8)")
    parser.add_argument(
        "--seeds",
        default="0",
        help="sampling seeds, comma-separated; each configuration runs once per seed (default 0)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--concurrency", type=int, default=4, help="questions in flight at once (default 4)")
    parser.add_argument("--max-tokens", type=int, default=512, help="max_tokens per trajectory (default 512)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a TTS field for every configuration (repeatable)",
    )
    parser.add_argument("--question-field", default="question", help="field holding the question (default question)")
    parser.add_argument("--answer-field", default="answer", help="field holding the reference answer (default answer)")
    parser.add_argument("--id-field", default="id", help="field naming a question (default id; else its row number)")
    parser.add_argument(
        "--system",
        default=None,
        help="system prompt (default: reason in blank-line steps, answer in \\boxed{}); '' for none",
    )
    parser.add_argument(
        "--model", default=None, help="model folder or hub id (default: embedded SmolLM2), or the service's model name"
    )
    parser.add_argument(
        "--backend", default="auto", help="in-process backend: auto, vllm or transformers (default auto)"
    )
    parser.add_argument(
        "--base-url", default=None, help="run against an llm-tts service instead, e.g. http://127.0.0.1:8001/v1"
    )
    parser.add_argument("--api-key", default=None, help=f"service API key (prefer ${API_KEY_ENV})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one question may take (default: none in-process, 600 s over HTTP)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write results and summary only")
    parser.add_argument(
        "--no-traces", action="store_true", help="do not record each run's trace (traces.jsonl beside the results)"
    )


def add_rescore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="an llm-tts eval --out folder")
    parser.add_argument("--aggregation", default=None, help="tts_score_aggregation: min, mean, max, product or last")
    parser.add_argument("--window-size", default=None, help="tts_window_size: a number of last steps, or 'all'")
    parser.add_argument("--selection", default=None, help="tts_selection: best or weighted")
    parser.add_argument(
        "--out", default=None, help="folder for the re-scored results (default: a subfolder of DIRECTORY)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write results and summary only")


def add_fit_selector_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="an llm-tts eval --out folder")
    parser.add_argument("--out", required=True, help="the selector file to write (JSON)")
    parser.add_argument(
        "--validation", type=float, default=0.3, help="share of questions held out for the report (default 0.3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split (default 0)")
    parser.add_argument(
        "--strategies", nargs="+", default=None, metavar="LABEL", help="fit on these strategy labels only (default all)"
    )
    parser.add_argument(
        "--model", choices=("logistic", "gbm"), default="logistic", help="logistic regression or gradient boosting"
    )
    parser.add_argument(
        "--calibration",
        choices=("isotonic", "platt", "none"),
        default="isotonic",
        help="how the picked answer's confidence is calibrated, on out-of-fold picks (default isotonic)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the selector without a reliability plot")


def run_fit_selector(args: argparse.Namespace) -> int:
    from llm_tts.evaluation.selector_fit import fit_selector_directory

    try:
        _, report = fit_selector_directory(
            args.directory,
            args.out,
            validation=args.validation,
            seed=args.seed,
            strategies=args.strategies,
            plot=not args.no_plots,
            model=args.model,
            calibration=args.calibration,
        )
    except LLMTTSError as e:
        print(f"llm-tts fit-selector: {e}", file=sys.stderr)
        return 2
    shown = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"held-out: {report['runs']} runs, {report['answers']} answers")
    for key in ("auroc", "vote_share_auroc", "ece", "selected_ece", "selector_accuracy", "vote_accuracy"):
        print(f"  {key:18} {shown(report[key])}")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from llm_tts.evaluation.configurations import build_configurations, parse_budgets
    from llm_tts.evaluation.dataset import load_questions
    from llm_tts.evaluation.runner import InProcessSolver, ServiceSolver, Solver, run_evaluation
    from llm_tts.evaluation.store import ResultsStore
    from llm_tts.messages import REASONING_SYSTEM_PROMPT

    try:
        # Everything a user can get wrong is checked here, before a model loads or a request goes out.
        questions = load_questions(
            args.data,
            question_field=args.question_field,
            answer_field=args.answer_field,
            id_field=args.id_field,
            limit=args.limit,
        )
        seeds = _seeds(args.seeds)
        common = {"max_tokens": args.max_tokens, **_assignments(args.set)}
        configurations = build_configurations(
            args.strategies, parse_budgets(args.budgets), common=common, seeds=seeds, greedy=not args.no_greedy
        )
        store = ResultsStore(args.out)
        store.finished()  # a results file that is not ours fails now
        solver: Solver
        if args.base_url:
            solver = ServiceSolver(
                args.base_url,
                model=args.model,
                api_key=args.api_key or os.environ.get(API_KEY_ENV),
                timeout=args.timeout,
            )
        else:
            from llm_tts.engine import TTSEngine

            solver = InProcessSolver(TTSEngine.create(args.model, args.backend), owns_engine=True)
        system = REASONING_SYSTEM_PROMPT if args.system is None else args.system
        where = args.base_url or f"{args.backend} backend in-process"
        jobs = len(questions) * len(configurations) * len(seeds)
        print(
            f"llm-tts eval: {len(questions)} questions x {len(configurations)} configurations x {len(seeds)} seeds "
            f"= {jobs} runs on {where}; results in {store.path}",
            file=sys.stderr,
        )
        try:
            run_evaluation(
                questions,
                configurations,
                solver,
                store,
                seeds=seeds,
                concurrency=args.concurrency,
                system_prompt=system or None,
                traces=not args.no_traces,
            )
        finally:
            solver.close()
    except LLMTTSError as e:
        print(f"llm-tts eval: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nllm-tts eval: interrupted; finished runs are saved in {args.out}: run the same command to resume",
            file=sys.stderr,
        )
        return 130
    keys = {(q.id, c.name, s) for q in questions for c in configurations for s in seeds}
    rows = [row for key, row in store.latest().items() if key in keys]
    return _report(Path(args.out), rows, plots=not args.no_plots)


def run_rescore(args: argparse.Namespace) -> int:
    from llm_tts.evaluation.rescore import rescore_directory

    settings: dict[str, Any] = {}
    try:
        if args.aggregation is not None:
            settings["tts_score_aggregation"] = args.aggregation
        if args.window_size is not None:
            settings["tts_window_size"] = (
                None if args.window_size == "all" else _integer("window-size", args.window_size)
            )
        if args.selection is not None:
            settings["tts_selection"] = args.selection
        target, summaries = rescore_directory(args.directory, settings, args.out, plots=not args.no_plots)
    except LLMTTSError as e:
        print(f"llm-tts rescore: {e}", file=sys.stderr)
        return 2
    from llm_tts.evaluation.summary import format_table

    print(format_table(summaries))
    print(f"\nre-scored results, summary and plots in {target}", file=sys.stderr)
    return 0


def _report(directory: Path, rows: list[ResultRow], *, plots: bool) -> int:
    from llm_tts.evaluation.summary import format_table, summarize, write_summary

    summaries = summarize(rows)
    written = list(write_summary(directory, summaries))
    if plots:
        from llm_tts.evaluation.plots import write_plots

        written += write_plots(directory, summaries, rows)
    print(format_table(summaries))
    print(f"\nwrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    failed = sum(s.failed for s in summaries)
    if failed:
        print(
            f"llm-tts eval: {failed} runs failed (see 'error' in results.jsonl); run again to retry them",
            file=sys.stderr,
        )
    return 0


def _seeds(text: str) -> list[int | None]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InvalidParameterError("seeds", text, "must be comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidParameterError("seeds", text, "must be distinct comma-separated integers, e.g. 0,1,2")
    return list(seeds)


def _assignments(items: list[str]) -> dict[str, Any]:
    from llm_tts.evaluation.configurations import parse_fields

    fields: dict[str, Any] = {}
    for item in items:
        fields.update(parse_fields(item, param="set"))
    return fields


def _integer(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParameterError(flag, text, "must be an integer (or 'all')") from None
