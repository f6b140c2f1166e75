"""Reasoning models: what does budget forcing cost and buy, and what does parsing thinking cost?

On the shipped arithmetic set, with the Qwen3-style thinking template of the tests
(tests/data/qwen3_style_thinking.jinja, given through chat_template_kwargs: the prompt opens the
thinking), self-consistency at N paths without a thinking budget and with each of ``--budgets``
(budget forcing: the end-of-thinking marker is injected at the budget and the model answers).
All questions of a configuration run concurrently on ONE engine, so the backend batches them.

Printed per configuration: accuracy (95% Wilson interval), mean completion tokens and mean thinking
tokens per question, the share of paths whose thinking ended, and the parsing overhead: the
seconds spent splitting every candidate into thinking and answer and counting its thinking tokens
(what the engine does once per candidate) over the seconds of generation, per token. Target: under
2% of generation time.

    python bench/bench_reasoning.py --backend vllm --questions 100 --paths 8         # GPU
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_reasoning.py --backend transformers \\
        --questions 2 --paths 2 --budgets 8 --max-tokens 24                           # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_adaptive import wilson  # the same 95% interval as the adaptive-compute bench

TEMPLATE = Path(__file__).resolve().parents[1] / "tests" / "data" / "qwen3_style_thinking.jinja"
SYSTEM = "Think briefly, then give the final answer in \\boxed{}."


def parse_seconds(engine: Any, result: Any, reader: Any) -> float:
    """Time to split every candidate and count its thinking tokens, as the engine does once each."""
    from llm_tts.reasoning import reasoning_token_count

    start = time.perf_counter()
    for trajectory in result.candidate_trajectories:
        split = reader.split(trajectory.text)
        reasoning_token_count(trajectory.segments, split, engine.backend.token_texts)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--model", default=None)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--budgets", type=int, nargs="*", default=[16, 32, 64])
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    args = ap.parse_args()

    from llm_tts.answers import answers_equivalent
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine
    from llm_tts.evaluation.dataset import load_questions
    from llm_tts.messages import ChatMessage

    engine = TTSEngine.create(args.model, backend=args.backend)
    questions = load_questions("arithmetic", limit=args.questions)
    template = TEMPLATE.read_text()
    rows = []
    for budget in [None, *args.budgets]:
        config = TTSConfig.create(
            num_paths=args.paths,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed,
            chat_template_kwargs={"chat_template": template},
            tts_thinking_budget=budget,
        )

        def one(q: Any, config: TTSConfig = config) -> tuple[Any, Any]:
            messages = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=q.question)]
            plan = engine.plan(messages, config)
            return plan, engine.execute(plan)

        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            done = list(pool.map(one, questions))
        wall = time.perf_counter() - start
        right = sum(
            r.metadata.selected_answer is not None and answers_equivalent(r.metadata.selected_answer, q.answer)
            for q, (_, r) in zip(questions, done)
        )
        tokens = [r.metadata.usage.completion_tokens for _, r in done]
        thinking = [r.metadata.usage.completion_tokens_details.reasoning_tokens for _, r in done]
        candidates = [c for _, r in done for c in r.metadata.candidates]
        finished = sum(c.thinking_finished is not False for c in candidates) / max(1, len(candidates))
        parse_s = sum(parse_seconds(engine, r, plan.reasoning) for plan, r in done)
        generation_s = sum(r.metadata.timings.generation_s for _, r in done)
        low, high = wilson(right, len(questions))
        rows.append(
            {
                "budget": budget,
                "accuracy": right / len(questions),
                "accuracy_95ci": [low, high],
                "completion_tokens_mean": sum(tokens) / len(tokens),
                "thinking_tokens_mean": sum(thinking) / len(thinking),
                "thinking_finished_share": finished,
                "parse_overhead": parse_s / generation_s if generation_s else None,
                "parse_us_per_token": 1e6 * parse_s / max(1, sum(tokens)),
                "wall_s": wall,
            }
        )
        r = rows[-1]
        print(
            f"budget={budget!s:>5}  acc {r['accuracy']:.3f} [{low:.3f}, {high:.3f}]  "
            f"tokens {r['completion_tokens_mean']:.1f}  thinking {r['thinking_tokens_mean']:.1f}  "
            f"thinking ended {finished:.2f}  parse {100 * (r['parse_overhead'] or 0):.3f}% of generation "
            f"({r['parse_us_per_token']:.2f} us/token)  wall {wall:.1f}s",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    engine.close()


if __name__ == "__main__":
    main()
