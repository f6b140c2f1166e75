"""Code execution (tool-integrated reasoning): what the sandbox pool buys, what TIR costs in a
search step, and whether running the model's code raises its accuracy.

1. Executions per second, one after another, through a warm pool (4) and with a cold sandbox
   each time (pool of 0), and 8 at once through the pool: the pool's ratio over cold.
2. One beam-search step (4 beams x 2) on the few-shot TIR prompt, with and without code
   execution: the time spent outside generation and scoring (sandboxes, injection, bookkeeping)
   as a share of the step.
3. Accuracy on generated arithmetic (products and three-term sums of 2-3 digit numbers) with the
   few-shot TIR prompt (llm_tts.tir.prompts): greedy and self-consistency at 8, with and without
   code execution (without it the model writes the code and then its own guess of the output).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_tir.py --questions 24
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def make_questions(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2:
            a, b = rng.randint(12, 99), rng.randint(12, 999)
            out.append((f"What is {a} * {b}?", str(a * b)))
        else:
            a, b, c = rng.randint(100, 999), rng.randint(100, 999), rng.randint(10, 99)
            out.append((f"What is {a} + {b} - {c}?", str(a + b - c)))
    return out


def bench_pool(runs: int) -> None:
    from llm_tts.sandbox import SandboxPool

    code = "x = sum(i * i for i in range(1000))\nprint(x)"
    print(f"\n## 1. sandbox executions ({runs} runs each)")
    print("  latency: one execution at a time, 0.2 s apart (blocks come due between generation rounds)")
    latency = {}
    for label, size in (("cold sandbox each time", 0), ("warm pool of 4", 4)):
        with SandboxPool(size) as pool:
            pool.execute(code)  # the first start pays for the page cache
            times = []
            for _ in range(runs):
                time.sleep(0.2)
                start = time.perf_counter()
                assert pool.execute(code).status == "ok"
                times.append(time.perf_counter() - start)
            latency[label] = statistics.median(times)
    cold = latency["cold sandbox each time"]
    for label, t in latency.items():
        print(f"  {label:28s} {t * 1000:7.1f} ms median = {1 / t:7.1f} executions/s   {cold / t:5.1f}x cold")
    print("  throughput: back to back (every execution starts a sandbox: the pool hides the start, not its CPU)")
    for label, size, parallel in (
        ("cold, 1 at a time", 0, 1),
        ("pool of 4, 1 at a time", 4, 1),
        ("pool of 8, 8 at once", 8, 8),
    ):
        with SandboxPool(size) as pool, ThreadPoolExecutor(parallel) as threads:
            time.sleep(1.0)
            start = time.perf_counter()
            assert all(r.status == "ok" for r in threads.map(lambda _: pool.execute(code), range(runs)))
            print(f"  {label:28s} {runs / (time.perf_counter() - start):7.1f} executions/s")


def bench_step(engine: Any, question: str) -> None:
    from llm_tts.tir.prompts import tir_messages

    fields = dict(
        tts_strategy="beam_search", tts_beam_size=4, tts_candidates_per_step=2, tts_max_steps=1,
        tts_step_max_tokens=64, max_tokens=64, temperature=0.8, seed=1,
    )  # fmt: skip
    print("\n## 2. one beam-search step (4 beams x 2, step <= 64 tokens), 3 runs each, median")
    for on in (False, True):
        rows = []
        for _ in range(3):
            m = engine.run(tir_messages(question), {**fields, "code_execution": on}).metadata
            t = m.timings
            code = m.code_execution.executions if m.code_execution else 0
            rows.append((t.total_s, t.generation_s, t.total_s - t.generation_s - t.scoring_s, code))
        total, gen, other, code = (statistics.median(x) for x in zip(*rows))
        print(
            f"  code_execution={on!s:5s} step {total:5.2f} s, generation {gen:5.2f} s, "
            f"outside generation+scoring {other:5.3f} s ({other / total:5.1%}), blocks run {code:.0f}"
        )


def bench_accuracy(engine: Any, questions: list[tuple[str, str]], paths: int) -> None:
    from llm_tts.answers import answers_equivalent
    from llm_tts.tir.prompts import tir_messages

    print(f"\n## 3. accuracy on {len(questions)} generated arithmetic questions, few-shot TIR prompt")
    print(f"  {'method':36s} {'accuracy':>9s} {'blocks/q':>9s} {'tokens/q':>9s} {'s/q':>6s}")
    methods = [
        ("greedy", dict(num_paths=1, temperature=0.0)),
        (f"self_consistency n={paths}", dict(num_paths=paths, temperature=0.8, seed=11)),
    ]
    for label, fields in methods:
        for on in (False, True):
            config = {**fields, "tts_strategy": "self_consistency", "max_tokens": 96, "code_execution": on}

            def one(qa: tuple[str, str], config: dict[str, Any] = config) -> tuple[bool, int, int]:
                m = engine.run(tir_messages(qa[0]), config).metadata
                ok = m.selected_answer is not None and answers_equivalent(m.selected_answer, qa[1])
                return ok, m.code_execution.executions if m.code_execution else 0, m.usage.completion_tokens

            start = time.perf_counter()
            with ThreadPoolExecutor(8) as threads:
                results = list(threads.map(one, questions))
            wall = (time.perf_counter() - start) / len(questions)
            acc = sum(r[0] for r in results) / len(results)
            blocks = sum(r[1] for r in results) / len(results)
            tokens = sum(r[2] for r in results) / len(results)
            name = f"{label}, code_execution={on}"
            print(f"  {name:36s} {acc:9.1%} {blocks:9.1f} {tokens:9.0f} {wall:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--runs", type=int, default=40, help="sandbox executions per pool measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    args = parser.parse_args()

    bench_pool(args.runs)
    from llm_tts.engine import TTSEngine

    engine = TTSEngine.create(backend=args.backend)
    try:
        questions = make_questions(args.questions, args.seed)
        bench_step(engine, questions[1][0])
        bench_accuracy(engine, questions, args.paths)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
