"""The adaptive stopping rule's posterior by hand, as a Polya urn: what test_fake_adaptive and
test_adaptive hold ``llm_tts.strategies.stopping`` to."""

from __future__ import annotations

import math


def stays(a: int, b: int, m: int) -> float:
    """By hand, as a Polya urn: m more draws from an urn with a + 1 leader and b + 1 runner-up
    balls (each draw adds a ball of its colour); the chance the leader ends strictly ahead."""

    def rising(x: int, k: int) -> int:
        return math.prod(x + i for i in range(k))

    return sum(
        math.comb(m, x) * rising(a + 1, x) * rising(b + 1, m - x) / rising(a + b + 2, m)
        for x in range(m + 1)
        if a + x > b + m - x
    )
