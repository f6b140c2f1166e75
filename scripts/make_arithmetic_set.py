"""Write the arithmetic set shipped for smoke evaluations (src/llm_tts/evaluation/data/arithmetic.jsonl).

Seeded, so the file is reproducible: ``python scripts/make_arithmetic_set.py`` rewrites it byte for
byte. 100 questions, easy enough for a 135M model to get some right and some wrong (the curves
need both): sums and differences of numbers up to 20, one-digit products and two-step sums of
one-digit numbers. Each row: {"id", "question", "answer"}.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 2026
SIZE = 100
OUT = Path(__file__).resolve().parents[1] / "src" / "llm_tts" / "evaluation" / "data" / "arithmetic.jsonl"


def make_question(rng: random.Random) -> tuple[str, int]:
    kind = rng.choice(["add", "sub", "mul", "add3"])
    if kind == "add":
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        return f"What is {a} + {b}?", a + b
    if kind == "sub":
        a, b = sorted((rng.randint(1, 20), rng.randint(1, 20)), reverse=True)
        return f"What is {a} - {b}?", a - b
    if kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} * {b}?", a * b
    a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    return f"Tom has {a} apples, buys {b} more and then {c} more. How many apples does he have?", a + b + c


def main() -> None:
    rng = random.Random(SEED)
    rows = []
    for i in range(1, SIZE + 1):
        question, answer = make_question(rng)
        rows.append({"id": f"arith-{i:03d}", "question": question, "answer": str(answer)})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} questions to {OUT}")


if __name__ == "__main__":
    main()
