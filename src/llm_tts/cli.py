"""The ``llm-tts`` command: ``demo`` runs the main job, ``serve`` starts the service, ``eval`` measures
strategies on a data set and ``rescore`` chooses again from an evaluation's recorded candidates."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


def _demo(args: argparse.Namespace) -> int:
    from llm_tts.demo import run_demo

    return run_demo(question=args.question, backend=args.backend, model=args.model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-tts", description="Test-time scaling for LLM reasoning")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="answer a question with a few strategies on the embedded model")
    demo.add_argument("question", nargs="?", default="What is 15 * 7?")
    demo.add_argument("--backend", default="auto", help="auto, vllm or transformers")
    demo.add_argument("--model", default=None, help="model folder or hub id (default: embedded SmolLM2)")
    demo.set_defaults(func=_demo)

    serve = sub.add_parser("serve", help="start the OpenAI-compatible service")
    from llm_tts.service.server import add_serve_arguments, run_serve

    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)

    from llm_tts.evaluation.command import add_eval_arguments, add_rescore_arguments, run_eval, run_rescore

    evaluate = sub.add_parser("eval", help="accuracy against compute: strategies x budgets on a JSONL data set")
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=run_eval)
    rescore = sub.add_parser("rescore", help="choose again from an eval's recorded candidates with another aggregation")
    add_rescore_arguments(rescore)
    rescore.set_defaults(func=run_rescore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP workers that spin made CPU decoding several times slower on a busy machine
    # (bench/bench_backend.py --omp-compare). Set before torch loads; an explicit value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
