"""What do OpenTelemetry spans cost a beam search? Target: under 3% of its wall time.

A run makes a handful of spans (run, plan, one per step, one per backend and scorer call); each
costs the SDK's span start, attributes, end and export. This runs a beam search on the embedded
model ``--runs`` times with spans going nowhere (the API's default provider: what a process
without a configured SDK pays), counts the spans one run makes under the SDK, then times that
many spans of the same shape ``--repeat`` times under an SDK provider with a batch processor
(what an exporting service pays; the export itself runs on the processor's thread), and prints
the spans' cost per run as a ratio of the beam search's wall time, from the same process. It also
prints the cost of one span where opentelemetry is not installed.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/bench_spans.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from beam_workload import BEAM, QUESTION

ATTRIBUTES = {"llm_tts.strategy": "beam_search", "llm_tts.prompts": 4, "gen_ai.usage.output_tokens": 64}


def spans_of_one_run(spans, count: int) -> None:
    """``count`` spans shaped like a run's: a run span over step spans over call spans."""
    with spans.span("llm_tts.run", ATTRIBUTES) as run:
        for _ in range(count - 1):
            with spans.span("llm_tts.generate", ATTRIBUTES) as call:
                call.set(ATTRIBUTES)
        run.set(ATTRIBUTES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="beam searches timed")
    ap.add_argument("--repeat", type=int, default=500, help="runs' worth of spans timed")
    args = ap.parse_args()

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llm_tts import spans
    from llm_tts.integrations.inprocess import shared_engine

    engine = shared_engine(None, "transformers")
    engine.run(QUESTION, {**BEAM, "max_tokens": 8})  # warm-up
    run_s = []
    for i in range(args.runs):
        start = time.perf_counter()
        engine.run(QUESTION, {**BEAM, "seed": i})
        run_s.append(time.perf_counter() - start)

    counted = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(counted))
    spans.use_tracer_provider(provider)
    engine.run(QUESTION, BEAM)
    per_run = len(counted.get_finished_spans())
    provider.shutdown()

    batched = TracerProvider()
    batched.add_span_processor(BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=1 << 20))
    spans.use_tracer_provider(batched)
    start = time.perf_counter()
    for _ in range(args.repeat):
        spans_of_one_run(spans, per_run)
    spans_s = (time.perf_counter() - start) / args.repeat
    batched.shutdown()

    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if the extra were not installed
    spans.use_tracer_provider(None)
    start = time.perf_counter()
    for _ in range(args.repeat):
        spans_of_one_run(spans, per_run)
    absent_s = (time.perf_counter() - start) / args.repeat / per_run

    wall = statistics.median(run_s)
    print(f"beam search (embedded model, {args.runs} runs): median {wall:.3f} s; {per_run} spans per run")
    print(
        f"spans under the SDK (batch processor): {spans_s * 1e3:.3f} ms per run = {spans_s / wall:.4%} of its wall time"
    )
    print(f"without opentelemetry: {absent_s * 1e9:.0f} ns per span")


if __name__ == "__main__":
    main()
