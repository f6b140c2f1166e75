"""The demo's seeded question sets: small ones the embedded model reasons out in text, and ones
with 2-3 digit numbers whose arithmetic it cannot do without running code."""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ("Ada", "Ben", "Cleo", "Dan", "Eva", "Finn")
ITEMS = ("apples", "pens", "stamps", "books", "marbles", "cards")


@dataclass(frozen=True)
class Question:
    text: str
    answer: str | None  # None for a question the user asked


def small_questions(count: int, seed: int = 0) -> list[Question]:
    """Single-digit ``+ - *`` and one-step word problems: SmolLM2-135M gets some right by
    reasoning in text, so voting and searching have room to help."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        kind = i % 6
        if kind == 0:
            out.append(Question(f"What is {a} + {b}?", str(a + b)))
        elif kind == 1:
            out.append(
                Question(f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", str(a + b))
            )
        elif kind == 2:
            out.append(Question(f"What is {a} * {b}?", str(a * b)))
        elif kind == 3:
            a, b = max(a, b) + 1, min(a, b)
            out.append(
                Question(
                    f"{name} has {a} {item} and gives {b} away. How many {item} does {name} have left?", str(a - b)
                )
            )
        elif kind == 4:
            a, b = max(a, b), min(a, b)
            out.append(Question(f"What is {a} - {b}?", str(a - b)))
        else:
            out.append(
                Question(
                    f"{name} has {a} bags with {b} {item} in each bag. How many {item} does {name} have in all?",
                    str(a * b),
                )
            )
    return out


def big_questions(count: int, seed: int = 0) -> list[Question]:
    """Products of 2-3 digit numbers, three-term sums and word problems with such numbers."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        kind = i % 4
        if kind == 0:
            a, b = rng.randint(12, 99), rng.randint(102, 999)
            out.append(Question(f"What is {a} * {b}?", str(a * b)))
        elif kind == 1:
            a, b = rng.randint(12, 99), rng.randint(12, 99)
            out.append(
                Question(f"{name} packs {a} boxes with {b} {item} in each box. How many {item} is that?", str(a * b))
            )
        elif kind == 2:
            a, b, c = rng.randint(100, 999), rng.randint(100, 999), rng.randint(10, 99)
            out.append(Question(f"What is {a} + {b} - {c}?", str(a + b - c)))
        else:
            a, b = rng.randint(100, 999), rng.randint(100, 999)
            out.append(
                Question(
                    f"{name} had {a} {item} and bought {b} more. How many {item} does {name} have now?", str(a + b)
                )
            )
    return out
