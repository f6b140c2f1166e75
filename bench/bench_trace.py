"""What does tts_trace cost a beam search? Target: under 3% of its wall time. And how big is a trace?

Tracing adds, per run, a few hook calls (one per sampling call, per expansion, per scorer call,
per step) that record nodes and events, then one pass over the nodes once the run has chosen, and
the trace's JSON in the response. This runs the same beam searches on the embedded model with
tts_trace off and on, interleaved (same seeds), and prints two ratios from the same process:
the time spent inside the tracer's hooks, its final pass and the trace's serialisation, over the
run's wall time (exact, immune to machine load), and the on/off ratio of the runs' median wall
times (end to end, noisy on a busy machine). Also the trace's size per step node.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/bench_trace.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from beam_workload import BEAM, QUESTION


def timed(spent: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="beam searches timed with tracing off, and as many on")
    args = ap.parse_args()

    from llm_tts.integrations.inprocess import shared_engine
    from llm_tts.strategies.tracing import RunTracer

    spent = [0.0]  # seconds inside the tracer, over every traced run
    for name in ("sampled", "made", "scored", "reported", "stopped", "note", "finish"):
        setattr(RunTracer, name, timed(spent, getattr(RunTracer, name)))

    engine = shared_engine(None, "transformers")
    engine.run(QUESTION, {**BEAM, "max_tokens": 8, "tts_trace": True})  # warm-up
    off_s, on_s, hook_ratios, sizes = [], [], [], []
    for i in range(args.runs):
        for trace in (False, True):
            spent[0] = 0.0
            start = time.perf_counter()
            result = engine.run(QUESTION, {**BEAM, "seed": i, "tts_trace": trace})
            text = json.dumps(result.metadata.model_dump(mode="json")) if trace else ""
            wall = time.perf_counter() - start
            (on_s if trace else off_s).append(wall)
            if trace:
                start = time.perf_counter()
                serialised = json.dumps(result.metadata.trace.to_json())  # what tracing adds to the response
                spent[0] += time.perf_counter() - start
                hook_ratios.append(spent[0] / wall)
                steps = sum(n.kind == "step" for n in result.metadata.trace.nodes)
                sizes.append((len(serialised), steps, len(text)))
    off, on = statistics.median(off_s), statistics.median(on_s)
    size, steps, whole = (statistics.mean(x) for x in zip(*sizes))
    print(f"beam search, tracing off: median {off:.3f} s; on: median {on:.3f} s over {args.runs} runs each")
    print(f"tracer's own time / wall time: median {statistics.median(hook_ratios) * 100:.3f}% (target < 3%)")
    print(f"end-to-end on/off ratio: {on / off:.4f} (noisy: machine load moves it more than tracing does)")
    print(f"trace size: {size / 1024:.1f} KiB for {steps:.1f} step nodes = {size / steps:.0f} bytes per step node")
    print(f"tts_metadata with the trace: {whole / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
