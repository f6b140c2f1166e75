"""What do the service's Prometheus metrics cost a beam search? Target: under 1% of its wall time.

Metrics add, per chat completion, one observation (opened by the middleware, filled in by the
serving code) and one ``ServiceMetrics.record`` when the response ends (counters, histograms,
and a walk over the candidates' segments and code executions); scrapes happen on their own
schedule and are timed apart. This runs a beam search on the embedded model ``--runs`` times
(metrics off: the plain engine run, its wall time), then records each run's result into a fresh
``ServiceMetrics`` ``--repeat`` times (metrics on: what the service adds), and prints the
per-request cost of metrics as a ratio of the beam search's wall time, from the same process.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/bench_metrics.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from beam_workload import BEAM, QUESTION
from prometheus_client import generate_latest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="beam searches timed")
    ap.add_argument("--repeat", type=int, default=2000, help="records timed per run's result")
    args = ap.parse_args()

    from llm_tts.integrations.inprocess import shared_engine
    from llm_tts.service.metrics import LiveState, RequestObservation, ServiceMetrics

    engine = shared_engine(None, "transformers")
    engine.run(QUESTION, {**BEAM, "max_tokens": 8})  # warm-up
    run_s, results = [], []
    for i in range(args.runs):
        start = time.perf_counter()
        results.append(engine.run(QUESTION, {**BEAM, "seed": i}))
        run_s.append(time.perf_counter() - start)

    metrics = ServiceMetrics(lambda: LiveState(running=1, queued=0))
    record_s = []
    for result in results:
        start = time.perf_counter()
        for _ in range(args.repeat):
            seen = RequestObservation(strategy="beam_search")
            seen.answered(result, recorded=False)
            metrics.record(seen, 200)
        record_s.append((time.perf_counter() - start) / args.repeat)
    start = time.perf_counter()
    for _ in range(100):
        generate_latest(metrics.registry)
    scrape_s = (time.perf_counter() - start) / 100

    beam, per_request = statistics.median(run_s), statistics.median(record_s)
    candidates = statistics.mean(len(r.metadata.candidates) for r in results)
    print(f"beam search (metrics off): median {beam:.3f} s over {args.runs} runs, {candidates:.1f} candidates each")
    print(f"metrics per request (on - off): median {per_request * 1e6:.1f} us")
    print(f"overhead ratio: {per_request / beam:.6f} ({per_request / beam * 100:.4f}% of the beam search; target < 1%)")
    print(f"one scrape of /metrics' registry: {scrape_s * 1e3:.2f} ms (per scrape, not per request)")


if __name__ == "__main__":
    main()
