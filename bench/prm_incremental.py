"""PRM scoring during a step-wise search: incremental (prefix KV cache) vs from scratch.

Simulates what beam search asks of the PRM: ``--beams`` trajectories each grow by one step per
round for ``--rounds`` rounds, and each round every beam's new step is scored in one call
(``first_unscored`` = steps already scored). The baseline is the same scorer with its prefix
cache disabled, so it re-runs every trajectory from the start at each round (what the
reference service did). The PRM is a random checkpoint of the Qwen2.5-Math-PRM architecture,
sized like SmolLM2-135M (no PRM weights can be downloaded here; compute does not depend on
the weights). Prints tokens run through the model, seconds, and the ratios, measured in the
same run, plus the largest difference between the two runs' scores.

    .venv/bin/python bench/prm_incremental.py [--beams 4 --rounds 8 --dtype float32 --threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_tts.scorers.base import ScoreRequest
from llm_tts.scorers.prm import PRMScorer, PRMStats
from llm_tts.types import Segment, Step
from tiny_prm import make_tiny_prm

SMOLLM2_135M = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    initializer_range=0.02,  # the usual init: activations stay tame over 30 layers
)
QUESTION = "A train travels 60 km in the first hour and 45 km in the second hour. What is its average speed?"


def step_text(beam: int, i: int) -> str:
    return (
        f"Step {i + 1}: on path {beam} we take the distance so far, {60 + 7 * i + beam} km, add the next "
        f"part of {5 + i} km and divide by {i + 2} hours to get {(65 + 8 * i + beam) / (i + 2):.2f} km/h.\n\n"
    )


def run(scorers: dict[str, PRMScorer], beams: int, rounds: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Grow the beams; each round, every scorer scores the new steps (interleaved, so that load
    from other processes on the machine falls on both alike)."""
    trajectories: list[list[Step]] = [[] for _ in range(beams)]
    seconds = dict.fromkeys(scorers, 0.0)
    scores: dict[str, list[float]] = {name: [] for name in scorers}
    for r in range(rounds):
        for b in range(beams):
            text = step_text(b, r)
            trajectories[b].append(Step(Segment(token_ids=(0,), text=text), 0, 1, text))
        requests = [ScoreRequest(QUESTION, list(t), first_unscored=r) for t in trajectories]
        for name, scorer in scorers.items():
            start = time.perf_counter()
            new = scorer.score(requests)
            seconds[name] += time.perf_counter() - start
            scores[name].extend(x for s in new for x in s)
    return seconds, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument(
        "--dtype", default="float32", help="PRM dtype (float32 is faster than bf16 on CPUs without bf16 units)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_prm(Path(tmp) / "prm", max_position_embeddings=4096, **SMOLLM2_135M)
        scorers = {
            "from scratch": PRMScorer(path, dtype=args.dtype, cache_max_entries=0),  # baseline: no prefix cache
            "incremental": PRMScorer(path, dtype=args.dtype),
        }
        run(scorers, 1, 1)  # warm-up (first-call allocations), not counted
        for s in scorers.values():
            s.stats = PRMStats()
            s.close()
        seconds, scores = run(scorers, args.beams, args.rounds)
    base, inc = scorers["from scratch"], scorers["incremental"]
    diff = max(abs(a - b) for a, b in zip(scores["from scratch"], scores["incremental"]))
    print(
        f"PRM {SMOLLM2_135M['num_hidden_layers']} layers x {SMOLLM2_135M['hidden_size']} (random weights, {args.dtype}, "
        f"CPU, {args.threads} thread(s)); {args.beams} beams x {args.rounds} rounds, one scorer call per round"
    )
    for name, s in scorers.items():
        print(
            f"{name:13s}: {s.stats.computed_tokens:6d} tokens computed, {s.stats.reused_tokens:6d} reused, "
            f"{seconds[name]:7.2f} s"
        )
    print(
        f"ratio from-scratch / incremental: tokens {base.stats.computed_tokens / inc.stats.computed_tokens:.2f}x, "
        f"time {seconds['from scratch'] / seconds['incremental']:.2f}x; max |score difference| {diff:.2e}"
    )


if __name__ == "__main__":
    main()
