"""Beam search on the vLLM backend: overhead vs plain sampling, prefix reuse, and the naive way.

On the embedded SmolLM2, one vLLM engine, all measured in this run:

1. **Search overhead**: beam search (``--beams`` beams, ``--candidates`` per step, up to
   ``--steps`` steps) through ``TTSEngine.run``, wall time divided by the time the same engine
   takes to generate the same number of tokens as plain batched sampling (one call, ``n`` =
   beams x candidates, the search's batch width). Target <= 1.3.
2. **Prefix reuse**: prompt tokens found in the engine's prefix cache / prompt tokens submitted
   during the beam search (vLLM scheduler statistics). Target >= 0.8.
3. **Against the naive way**: the same beam search done the reference service's way (each
   beam's text re-rendered through the chat template and re-tokenised at every step, one engine
   call per beam), wall time naive / ours.

Each measurement is repeated ``--repeats`` times, interleaved, and the medians are compared
(the machine is shared; interleaving spreads its load over all three). Ratios are printed for
wall time and for this process's CPU time, which other processes' load disturbs far less.

Also printed: the **engine steps** each took and the mean number of sequences per step. A step
of the search lasts as long as its slowest candidate (often one cut at ``--step-tokens``), and
beams that finish leave fewer sequences for the rest of the search; an engine step costs nearly
the same with fewer sequences, so the overhead follows the ratio of engine steps. And
**1b**: ``--concurrent`` searches run at once from threads, as the service runs requests; the
backend merges them into shared engine batches, so one search's stragglers share the engine
with the other's work.

    .venv/bin/python bench/bench_search.py [--repeats 3 --steps 8 --step-tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May? Think step by step."


def beam_config(args: argparse.Namespace):
    from llm_tts.config import TTSConfig

    return TTSConfig.create(
        tts_strategy="beam_search",
        tts_scorer="entropy",
        tts_beam_size=args.beams,
        tts_candidates_per_step=args.candidates,
        tts_max_steps=args.steps,
        tts_step_max_tokens=args.step_tokens,
        max_tokens=args.steps * args.step_tokens,
        temperature=0.8,
    )


def run_beam_search(engine, messages, config) -> tuple[float, int, dict]:
    backend = engine.backend
    backend.reset_engine_stats()
    start, cpu = time.perf_counter(), time.process_time()
    result = engine.run(messages, config)
    wall = time.perf_counter() - start
    stats = backend.engine_stats()
    stats["cpu_s"] = time.process_time() - cpu
    return wall, result.metadata.usage.completion_tokens, stats


def run_concurrent_searches(engine, messages, config, k: int) -> tuple[float, float, int]:
    """``k`` beam searches at once from ``k`` threads (as the service runs them): wall, CPU, tokens."""
    from concurrent.futures import ThreadPoolExecutor

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(k) as pool:
        results = list(pool.map(lambda _: engine.run(messages, config), range(k)))
    tokens = sum(r.metadata.usage.completion_tokens for r in results)
    return time.perf_counter() - start, time.process_time() - cpu, tokens


def plain_sampling_rate(backend, prompt_ids, width: int, tokens: int) -> tuple[float, float, int]:
    """Tokens per wall second and per CPU second of one plain batched call of ``width`` samples,
    about ``tokens`` in all (same top-k logprobs as the entropy scorer asks for), and the engine
    steps it took."""
    from llm_tts.backends.base import SamplingParams
    from llm_tts.scorers.logprob import ENTROPY_TOP_K

    per_sample = max(1, -(-tokens // width))
    backend.reset_engine_stats()
    start, cpu = time.perf_counter(), time.process_time()
    (row,) = backend.generate(
        [prompt_ids], SamplingParams(n=width, temperature=0.8, max_tokens=per_sample, top_logprobs=ENTROPY_TOP_K)
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    done = sum(len(s) for s in row)
    return done / wall, done / cpu, backend.engine_stats()["engine_steps"]


def naive_beam_search(engine, messages, config) -> tuple[float, int, float]:
    """The reference service's loop: re-render + re-tokenise text each step, one call per beam.

    Same scorer, same ranking and finishing rules as ours (it reuses the strategy's helpers);
    only how prefixes reach the engine differs.
    """
    from llm_tts.messages import ChatMessage
    from llm_tts.strategies import Beam, StrategyContext, dedupe
    from llm_tts.types import Step, Trajectory

    backend = engine.backend
    scorer = engine._scorer(config.tts_scorer)
    c = config
    start, cpu = time.perf_counter(), time.process_time()
    ctx = StrategyContext("beam_search", backend, scorer, c, backend.render_chat(messages), QUESTION)
    live = [Beam(Trajectory(ctx.prompt_ids))]
    finished: list[Beam] = []
    for step in range(1, c.tts_max_steps + 1):
        n = c.tts_candidates_per_step * (c.tts_beam_size if step == 1 else 1)
        candidates = []
        for beam in live:  # one engine call per beam
            text = beam.text  # the prefix as text, re-rendered and re-tokenised
            convo = messages + ([ChatMessage(role="assistant", content=text)] if text else [])
            ids = backend.render_chat(convo)
            budget = min(c.tts_step_max_tokens, c.max_tokens - beam.num_tokens)
            (row,) = ctx.generate([ids], n, budget, ctx.step_stops)
            candidates += [ctx.child(beam, (seg,), Step(seg, 0, len(seg), seg.text)) for seg in row]
        candidates = dedupe(candidates)
        ctx.score(candidates)
        candidates.sort(key=lambda b: b.score, reverse=True)
        finished += [b for b in candidates if b.finished]
        live = [b for b in candidates if not b.finished][: max(0, c.tts_beam_size - len(finished))]
        if not live:
            break
    return time.perf_counter() - start, ctx.completion_tokens, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--step-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=2, help="also run this many searches at once (0: skip)")
    ap.add_argument("--kv-cache-space", type=float, default=1.0, help="GiB of KV cache (CPU)")
    ap.add_argument("--dtype", default="auto", help="the backend's dtype (auto: as the library picks it)")
    ap.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    args = ap.parse_args()

    from llm_tts.backends.vllm_backend import VLLMBackend
    from llm_tts.engine import TTSEngine
    from llm_tts.messages import ChatMessage

    backend = VLLMBackend(
        args.model,
        dtype=args.dtype,
        max_model_len=2048,
        kv_cache_space=args.kv_cache_space,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    engine = TTSEngine(backend)
    messages = [ChatMessage(role="user", content=QUESTION)]
    config = beam_config(args)
    width = args.beams * args.candidates
    prompt_ids = backend.render_chat(messages)

    run_beam_search(engine, messages, config)  # warm-up: first-call costs, not measured
    rows, concurrent = [], []
    for r in range(args.repeats):
        wall, tokens, stats = run_beam_search(engine, messages, config)
        rate, cpu_rate, plain_steps = plain_sampling_rate(backend, prompt_ids, width, tokens)
        n_wall, n_tokens, n_cpu = naive_beam_search(engine, messages, config)
        if args.concurrent > 1:
            c_wall, c_cpu, c_tokens = run_concurrent_searches(engine, messages, config, args.concurrent)
            c_rate, c_cpu_rate, _ = plain_sampling_rate(backend, prompt_ids, width * args.concurrent, c_tokens)
            concurrent.append((c_wall / (c_tokens / c_rate), c_cpu / (c_tokens / c_cpu_rate)))
            print(
                f"repeat {r}: {args.concurrent} concurrent searches {c_wall:.2f}s wall / {c_cpu:.2f}s CPU for {c_tokens} tokens; "
                f"plain sampling of those tokens {c_tokens / c_rate:.2f}s wall / {c_tokens / c_cpu_rate:.2f}s CPU",
                flush=True,
            )
        rows.append(
            dict(
                wall=wall,
                cpu=stats["cpu_s"],
                tokens=tokens,
                plain=tokens / rate,
                plain_cpu=tokens / cpu_rate,
                n_wall=n_wall,
                n_cpu=n_cpu,
                n_tokens=n_tokens,
                stats=stats,
                plain_steps=plain_steps,
            )
        )
        print(
            f"repeat {r}: beam search {wall:.2f}s wall / {stats['cpu_s']:.2f}s CPU for {tokens} tokens "
            f"in {stats['engine_steps']} engine steps ({stats['mean_running']:.1f} sequences per step); "
            f"plain sampling of those tokens {tokens / rate:.2f}s wall / {tokens / cpu_rate:.2f}s CPU in {plain_steps} engine steps ({rate:.0f} tok/s) "
            f"-> {wall / (tokens / rate):.2f}; "
            f"naive {n_wall:.2f}s wall / {n_cpu:.2f}s CPU for {n_tokens} tokens; "
            f"prefix cache {stats['cached_tokens']}/{stats['prompt_tokens']} prompt tokens",
            flush=True,
        )

    med = statistics.median
    overhead = med(x["wall"] / x["plain"] for x in rows)
    overhead_cpu = med(x["cpu"] / x["plain_cpu"] for x in rows)
    hits = sum(x["stats"]["cached_tokens"] for x in rows) / max(1, sum(x["stats"]["prompt_tokens"] for x in rows))
    naive_ratio = med(x["n_wall"] for x in rows) / med(x["wall"] for x in rows)
    naive_cpu = med(x["n_cpu"] for x in rows) / med(x["cpu"] for x in rows)
    naive_per_token = med((x["n_wall"] / x["n_tokens"]) / (x["wall"] / x["tokens"]) for x in rows)
    print()
    print(
        f"config: beam {args.beams}, {args.candidates} candidates/step, <= {args.steps} steps of <= {args.step_tokens} tokens, "
        f"{args.dtype}, {args.repeats} repeats (medians); CPU = this process's CPU seconds (robust to other load)"
    )
    print(
        f"1. search overhead (beam search / plain sampling of the same tokens): {overhead:.2f} wall, {overhead_cpu:.2f} CPU  (target <= 1.3); "
        f"engine steps {med(x['stats']['engine_steps'] / x['plain_steps'] for x in rows):.2f}x plain's"
    )
    if concurrent:
        print(
            f"1b. {args.concurrent} searches at once (service-style), same ratio:       "
            f"{med(w for w, _ in concurrent):.2f} wall, {med(c for _, c in concurrent):.2f} CPU"
        )
    print(f"2. prefix-cache hits / prompt tokens submitted during beam search:  {hits:.1%}  (target >= 80%)")
    print(
        f"3. naive (re-render + re-tokenise, one call per beam) / ours:       {naive_ratio:.2f}x wall, {naive_cpu:.2f}x CPU "
        f"(wall per generated token: {naive_per_token:.2f}x)"
    )
    engine.close()


if __name__ == "__main__":
    main()
