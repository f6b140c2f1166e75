"""Greedy vs each strategy on a small arithmetic set this script generates itself.

For each method: accuracy (selected answer equivalent to the true sum), completion tokens
generated per question (every candidate, pruned ones too: ``usage.completion_tokens``) and
wall time per question, plus both as ratios against greedy decoding measured in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_strategies.py --questions 10

(OMP_NUM_THREADS=1 because torch's OpenMP threads thrash when the CPUs are shared.)
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

SYSTEM = "Reason step by step, separating steps with a blank line, and put the final answer in \\boxed{}."


def make_questions(count: int, seed: int, max_operand: int = 9) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = [(rng.randint(1, max_operand), rng.randint(1, max_operand)) for _ in range(count)]
    return [(f"What is {a} + {b}?", str(a + b)) for a, b in pairs]


def methods(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    n = args.size
    return [
        ("greedy", dict(tts_strategy="self_consistency", num_paths=1, temperature=0.0)),
        (f"self_consistency n={n}", dict(tts_strategy="self_consistency", num_paths=n)),
        (
            f"offline_bon n={n} entropy best",
            dict(tts_strategy="offline_bon", tts_num_trajectories=n, tts_scorer="entropy", tts_selection="best"),
        ),
        (
            f"offline_bon n={n} weighted",
            dict(tts_strategy="offline_bon", tts_num_trajectories=n, tts_scorer="perplexity", tts_selection="weighted"),
        ),
        (f"online_bon k={n} entropy", dict(tts_strategy="online_bon", tts_candidates_per_step=n, tts_scorer="entropy")),
        (
            f"beam_search {n // 2}x2 entropy",
            dict(
                tts_strategy="beam_search",
                tts_beam_size=max(1, n // 2),
                tts_candidates_per_step=2,
                tts_scorer="entropy",
            ),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument(
        "--max-operand", type=int, default=9, help="9: 'What is 3 + 4?' (SmolLM2-135M gets two-digit sums wrong)"
    )
    parser.add_argument("--size", type=int, default=4, help="paths / trajectories / candidates per step")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--step-max-tokens", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from llm_tts.answers import answers_equivalent
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine
    from llm_tts.strategies import fields_for

    engine = TTSEngine.create(backend=args.backend)
    questions = make_questions(args.questions, args.seed, args.max_operand)
    common = dict(
        max_tokens=args.max_tokens,
        tts_step_max_tokens=args.step_max_tokens,
        tts_max_steps=args.max_steps,
        seed=args.seed,
    )
    print(f"{len(questions)} questions, backend {engine.backend.name}: {engine.backend.model_name}, {common}")
    rows = []
    for title, fields in methods(args):
        config = TTSConfig.create(**fields_for(fields["tts_strategy"], {**common, **fields}))
        correct, tokens, seconds = 0, 0, 0.0
        for question, gold in questions:
            start = time.perf_counter()
            result = engine.run([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], config)
            seconds += time.perf_counter() - start
            answer = result.metadata.selected_answer
            correct += bool(answer is not None and answers_equivalent(answer, gold))
            tokens += result.metadata.usage.completion_tokens
        rows.append((title, correct / len(questions), tokens / len(questions), seconds / len(questions)))
        print(f"  done: {title}", flush=True)
    base_tokens, base_time = rows[0][2], rows[0][3]
    print(f"\n{'method':32} {'accuracy':>8} {'tokens/q':>9} {'x greedy':>9} {'s/q':>7} {'x greedy':>9}")
    for title, acc, tok, sec in rows:
        print(f"{title:32} {acc:8.2f} {tok:9.1f} {tok / base_tokens:9.2f} {sec:7.2f} {sec / base_time:9.2f}")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
