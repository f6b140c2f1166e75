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
(the machine is shared; interleaving spreads its load over all three).

    .venv/bin/python bench/bench_search.py [--repeats 3 --steps 8 --step-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

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
    backend.reset_prefix_cache_stats()
    start = time.perf_counter()
    result = engine.run(messages, config)
    wall = time.perf_counter() - start
    return wall, result.metadata.usage.completion_tokens, backend.prefix_cache_stats()


def plain_sampling_rate(backend, prompt_ids, width: int, tokens: int) -> float:
    """Tokens per second of one plain batched call of ``width`` samples, about ``tokens`` in all."""
    from llm_tts.backends.base import SamplingParams

    per_sample = max(1, -(-tokens // width))
    start = time.perf_counter()
    (row,) = backend.generate([prompt_ids], SamplingParams(n=width, temperature=0.8, max_tokens=per_sample))
    wall = time.perf_counter() - start
    return sum(len(s) for s in row) / wall


def naive_beam_search(engine, messages, config) -> tuple[float, int]:
    """The reference service's loop: re-render + re-tokenise text each step, one call per beam.

    Same scorer, same ranking and finishing rules as ours (it reuses the strategy's helpers);
    only how prefixes reach the engine differs.
    """
    from llm_tts.messages import ChatMessage
    from llm_tts.strategies.base import Beam, StrategyContext, dedupe
    from llm_tts.types import Trajectory

    backend = engine.backend
    scorer = engine._scorer(config.tts_scorer)
    c = config
    start = time.perf_counter()
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
            candidates += [ctx._child(beam, seg) for seg in row]
        candidates = dedupe(candidates)
        ctx.score(candidates)
        candidates.sort(key=lambda b: b.score, reverse=True)
        finished += [b for b in candidates if b.finished]
        live = [b for b in candidates if not b.finished][: max(0, c.tts_beam_size - len(finished))]
        if not live:
            break
    return time.perf_counter() - start, ctx.completion_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--step-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kv-cache-space", type=float, default=1.0, help="GiB of KV cache (CPU)")
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()

    from llm_tts.backends.vllm_backend import VLLMBackend
    from llm_tts.engine import TTSEngine
    from llm_tts.messages import ChatMessage

    backend = VLLMBackend(dtype=args.dtype, max_model_len=2048, kv_cache_space=args.kv_cache_space)
    engine = TTSEngine(backend)
    messages = [ChatMessage(role="user", content=QUESTION)]
    config = beam_config(args)
    width = args.beams * args.candidates
    prompt_ids = backend.render_chat(messages)

    run_beam_search(engine, messages, config)  # warm-up: first-call costs, not measured
    ours, naive, plain, hits = [], [], [], []
    for r in range(args.repeats):
        wall, tokens, stats = run_beam_search(engine, messages, config)
        rate = plain_sampling_rate(backend, prompt_ids, width, tokens)
        n_wall, n_tokens = naive_beam_search(engine, messages, config)
        ours.append((wall, tokens))
        plain.append(tokens / rate)
        naive.append((n_wall, n_tokens))
        hits.append(stats)
        print(
            f"repeat {r}: beam search {wall:.2f}s for {tokens} tokens; plain sampling of those tokens "
            f"{tokens / rate:.2f}s ({rate:.0f} tok/s); naive {n_wall:.2f}s for {n_tokens} tokens; "
            f"prefix cache {stats['cached_tokens']}/{stats['prompt_tokens']} prompt tokens",
            flush=True,
        )

    overhead = statistics.median(w / p for (w, _), p in zip(ours, plain))
    hit_rate = sum(s["cached_tokens"] for s in hits) / max(1, sum(s["prompt_tokens"] for s in hits))
    naive_ratio = statistics.median(nw for nw, _ in naive) / statistics.median(w for w, _ in ours)
    naive_per_token = statistics.median((nw / nt) / (w / t) for (nw, nt), (w, t) in zip(naive, ours))
    print()
    print(f"config: beam {args.beams}, {args.candidates} candidates/step, <= {args.steps} steps of <= {args.step_tokens} tokens, "
          f"{args.dtype}, {args.repeats} repeats (medians)")
    print(f"1. search overhead (beam search wall / plain sampling of the same tokens): {overhead:.2f}  (target <= 1.3)")
    print(f"2. prefix-cache hits / prompt tokens submitted during beam search:         {hit_rate:.1%}  (target >= 80%)")
    print(f"3. naive (re-render + re-tokenise, one call per beam) / ours, wall time:   {naive_ratio:.2f}x "
          f"(per generated token: {naive_per_token:.2f}x)")
    engine.close()


if __name__ == "__main__":
    main()
