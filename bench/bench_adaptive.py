"""Adaptive compute: do early stopping and DeepConf spend fewer tokens for the same accuracy?

On a generated, seeded arithmetic set (single-digit +, -, * and two-digit +, -), with ONE vLLM
engine, four configurations at the same N (16 paths), each over every question, one after
another (all questions of a configuration concurrently, so the engine batches them):

- ``self_consistency`` at N = 16 (the baseline: every path runs to its end);
- the same with ``tts_stop_confidence`` (0.95 by default): paths stream, sampling stops when the
  vote is settled, paths still running are aborted;
- ``deepconf`` online (4 warm-up traces set the confidence bar; later traces stop below it; sampling
  stops at 95% consensus), with the bar at the 10th percentile (the default, the paper's
  DeepConf-high) and at the 90th (DeepConf-low); and offline (16 traces, the least confident 10%
  filtered out, weighted vote: it generates everything, so it saves no tokens by design).

Printed: accuracy (95% Wilson interval), mean completion tokens per question (every generated
token, aborted ones included), the token saving and the accuracy difference against the
baseline with paired bootstrap 95% intervals (questions resampled), wall time of each
configuration's block and why the runs stopped. Target: >= 40% fewer tokens at an accuracy within
1 point of the baseline; and wall time falling with tokens (an aborted path frees its batch slot).

    .venv/bin/python bench/bench_adaptive.py --questions 60 --out /tmp/adaptive.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SYSTEM = "Solve the problem briefly and put the final answer in \\boxed{}."


def make_questions(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` seeded (question, answer) pairs: half single-digit (+, -, *), half two-digit (+, -)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2 == 0:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            op = rng.choice("+-*")
        else:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            op = rng.choice("+-")
        if op == "-":
            a, b = max(a, b), min(a, b)
        value = a + b if op == "+" else a - b if op == "-" else a * b
        out.append((f"What is {a} {op} {b}?", str(value)))
    return out


def configurations(n: int, threshold: float) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"self_consistency N={n}", dict(tts_strategy="self_consistency", num_paths=n)),
        (
            f"self_consistency N={n} stop={threshold:g}",
            dict(tts_strategy="self_consistency", num_paths=n, tts_stop_confidence=threshold),
        ),
        (
            f"self_consistency N={n} stop=0.8",
            dict(tts_strategy="self_consistency", num_paths=n, tts_stop_confidence=0.8),
        ),
        (f"deepconf online N={n} p=10", dict(tts_strategy="deepconf", num_paths=n, tts_deepconf_mode="online")),
        (
            f"deepconf online N={n} p=50",
            dict(tts_strategy="deepconf", num_paths=n, tts_deepconf_mode="online", tts_deepconf_percentile=50),
        ),
        (
            f"deepconf online N={n} p=90",
            dict(tts_strategy="deepconf", num_paths=n, tts_deepconf_mode="online", tts_deepconf_percentile=90),
        ),
        (f"deepconf offline N={n} p=10", dict(tts_strategy="deepconf", num_paths=n, tts_deepconf_mode="offline")),
    ]


def run_block(engine: Any, questions: list[tuple[str, str]], fields: dict[str, Any], args: argparse.Namespace):
    from llm_tts.answers import answers_equivalent
    from llm_tts.config import TTSConfig

    def one(qi: int) -> dict[str, Any]:
        question, gold = questions[qi]
        config = TTSConfig.create(max_tokens=args.max_tokens, temperature=args.temperature, **fields)
        m = engine.run([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], config).metadata
        ok = m.selected_answer is not None and answers_equivalent(m.selected_answer, gold)
        return dict(
            correct=ok,
            tokens=m.usage.completion_tokens,
            stopped_by=m.stopped_by,
            aborted=sum(c.stopped_early for c in m.candidates),
            paths=len(m.candidates),
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        rows = list(pool.map(one, range(len(questions))))
    return rows, time.perf_counter() - start


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def bootstrap(base: Sequence[dict], other: Sequence[dict], draws: int = 2000, seed: int = 0):
    """Paired bootstrap over questions: 95% intervals of the token saving and the accuracy difference."""
    rng = random.Random(seed)
    n = len(base)
    savings, diffs = [], []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        tb = sum(base[i]["tokens"] for i in idx)
        to = sum(other[i]["tokens"] for i in idx)
        savings.append(1 - to / tb if tb else 0.0)
        diffs.append(sum(other[i]["correct"] - base[i]["correct"] for i in idx) / n)
    savings.sort()
    diffs.sort()
    lo, hi = int(0.025 * draws), int(0.975 * draws) - 1
    return (savings[lo], savings[hi]), (diffs[lo], diffs[hi])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=60, help="60: about 10 minutes on a 2-core CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--stop-confidence", type=float, default=0.95)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--concurrency", type=int, default=16, help="questions in flight at once")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None, help="write every run's record here (JSON)")
    args = ap.parse_args()

    from llm_tts.engine import TTSEngine

    questions = make_questions(args.questions, args.seed)
    engine = TTSEngine.create(args.model, backend="vllm", max_model_len=2048)
    print(
        f"{len(questions)} questions, N={args.paths}, max_tokens={args.max_tokens}, T={args.temperature}, "
        f"{args.concurrency} at once, vLLM {engine.backend.model_name}",
        flush=True,
    )
    results: dict[str, tuple[list[dict], float]] = {}
    for name, fields in configurations(args.paths, args.stop_confidence):
        rows, wall = run_block(engine, questions, fields, args)
        results[name] = (rows, wall)
        print(f"  {name}: {wall:.0f} s", flush=True)
    engine.close()

    base_name = next(iter(results))
    base, base_wall = results[base_name]
    base_tokens = sum(r["tokens"] for r in base) / len(base)
    print()
    header = f"{'configuration':34} {'accuracy (95% CI)':>22} {'tokens/q':>9} {'saving (95% CI)':>22} {'acc diff (95% CI)':>24} {'wall s':>7} {'wall/base':>9}  stopped_by"
    print(header)
    for name, (rows, wall) in results.items():
        k, n = sum(r["correct"] for r in rows), len(rows)
        lo, hi = wilson(k, n)
        tokens = sum(r["tokens"] for r in rows) / n
        stops = Counter(r["stopped_by"] for r in rows)
        line = f"{name:34} {k / n:6.1%} ({lo:5.1%}-{hi:5.1%}) {tokens:9.0f} "
        if rows is base:
            line += f"{'-':>22} {'-':>24} "
        else:
            (s_lo, s_hi), (d_lo, d_hi) = bootstrap(base, rows)
            saving = 1 - tokens / base_tokens
            diff = (k - sum(r["correct"] for r in base)) / n
            line += f"{saving:6.1%} ({s_lo:5.1%}-{s_hi:5.1%}) {diff:+6.1%} ({d_lo:+5.1%} to {d_hi:+5.1%}) "
        line += f"{wall:7.0f} {wall / base_wall:9.2f}  {dict(stops)}"
        print(line)
    print()
    for name, (rows, _) in list(results.items())[1:]:
        tokens = sum(r["tokens"] for r in rows) / len(rows)
        saving = 1 - tokens / base_tokens
        diff = (sum(r["correct"] for r in rows) - sum(r["correct"] for r in base)) / len(rows)
        met = saving >= 0.40 and diff >= -0.01
        print(
            f"target (>= 40% fewer tokens, accuracy within 1 point) for {name}: {'MET' if met else 'MISSED'} "
            f"(saving {saving:.1%}, accuracy {diff:+.1%})"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({name: rows for name, (rows, _) in results.items()}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
