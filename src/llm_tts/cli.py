"""The ``llm-tts`` command: ``demo`` runs the main job, ``serve`` starts the service, ``eval`` measures
strategies on a data set, ``rescore`` chooses again from an evaluation's recorded candidates,
``fit-selector`` fits a selector on them, ``sessions export`` writes a service session's training samples and
``view`` opens traces in the browser."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from llm_tts.demo import run_demo

    return run_demo(args.question, questions=args.questions, seed=args.seed, backend=args.backend, model=args.model)


def _verbose_flag() -> argparse.ArgumentParser:
    flag = argparse.ArgumentParser(add_help=False)
    flag.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the engine libraries' logs (vLLM, transformers, torch); by default only errors",
    )
    return flag


def _configure_logging(verbose: bool) -> None:
    """--verbose configures logging at INFO: engine logs then flow into it (llm_tts.engine_logs)."""
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-tts", description="Test-time scaling for LLM reasoning")
    sub = parser.add_subparsers(dest="command", required=True)

    from llm_tts.demo import DEFAULT_CODE_QUESTIONS, DEFAULT_QUESTIONS

    verbose = _verbose_flag()
    demo = sub.add_parser(
        "demo",
        parents=[verbose],
        help="what each test-time scaling method buys over greedy decoding, on seeded arithmetic and word questions",
    )
    demo.add_argument(
        "question",
        nargs="?",
        default=None,
        help="ask every method this question instead of the two sections, e.g. 'What is 17 * 23?'",
    )
    demo.add_argument(
        "--questions",
        type=int,
        default=None,
        help=f"generated questions in each of the two sections (default {DEFAULT_QUESTIONS} and {DEFAULT_CODE_QUESTIONS})",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated questions")
    demo.add_argument("--backend", default="auto", help="auto, vllm or transformers")
    demo.add_argument("--model", default=None, help="model folder or hub id (default: embedded SmolLM2)")
    demo.set_defaults(func=_demo)

    serve = sub.add_parser("serve", parents=[verbose], help="start the OpenAI-compatible service")
    from llm_tts.service.server import add_serve_arguments, run_serve

    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)

    from llm_tts.evaluation.command import (
        add_eval_arguments,
        add_fit_selector_arguments,
        add_rescore_arguments,
        run_eval,
        run_fit_selector,
        run_rescore,
    )

    evaluate = sub.add_parser(
        "eval", parents=[verbose], help="accuracy against compute: strategies x budgets on a JSONL data set"
    )
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=run_eval)
    rescore = sub.add_parser(
        "rescore", parents=[verbose], help="choose again from an eval's recorded candidates with another aggregation"
    )
    add_rescore_arguments(rescore)
    rescore.set_defaults(func=run_rescore)
    fit = sub.add_parser(
        "fit-selector", parents=[verbose], help="fit a selector (P(answer is right)) on an eval's recorded candidates"
    )
    add_fit_selector_arguments(fit)
    fit.set_defaults(func=run_fit_selector)

    from llm_tts.sessions.command import add_sessions_arguments, run_sessions

    sessions = sub.add_parser("sessions", help="export a service session's records as RL training samples")
    add_sessions_arguments(sessions)
    sessions.set_defaults(func=run_sessions, verbose=False)

    from llm_tts.viewer.command import add_view_arguments, run_view

    view = sub.add_parser(
        "view", help="open a trace, an eval folder or a session export in the browser (no model loaded)"
    )
    add_view_arguments(view)
    view.set_defaults(func=run_view, verbose=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP workers that spin made CPU decoding several times slower on a busy machine
    # (bench/bench_backend.py --omp-compare). Set before torch loads; an explicit value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
