"""bfloat16 vs float32 on this CPU, both backends: why ``dtype="auto"`` picks float32 here.

On a CPU without bfloat16 instructions (AVX512-BF16, AMX) every bfloat16 matrix product is
converted on the fly. For each backend this loads the embedded SmolLM2 in both dtypes (one
process, measured interleaved, medians of ``--repeats``) and times a prefill (a ~500-token
prompt, 1 new token) and decoding (``--width`` samples of ``--max-tokens`` tokens), then prints
float32's speed-up over bfloat16 and what ``auto`` picks on this machine.

    .venv/bin/python bench/bench_dtype.py [--backends transformers vllm] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROMPT = "Summarise the following notes about the sea, its tides and its creatures. " * 40


def make(backend: str, dtype: str):
    if backend == "vllm":
        from llm_tts.backends.vllm_backend import VLLMBackend

        return VLLMBackend(dtype=dtype, max_model_len=2048, kv_cache_space=1.0)
    from llm_tts.backends.transformers_backend import TransformersBackend

    return TransformersBackend(dtype=dtype)


def timings(b, width: int, max_tokens: int, salt: int) -> tuple[float, float]:
    """(prefill seconds, decode tokens per second); ``salt`` keeps prompts out of prefix caches."""
    from llm_tts.backends.base import SamplingParams
    from llm_tts.messages import ChatMessage

    prompt = b.render_chat([ChatMessage(role="user", content=f"[{salt}] {PROMPT}")])
    start = time.perf_counter()
    b.generate([prompt], SamplingParams(n=1, max_tokens=1))
    prefill = time.perf_counter() - start
    short = b.render_chat([ChatMessage(role="user", content=f"[{salt}] Write a long story about a dragon.")])
    start = time.perf_counter()
    (row,) = b.generate([short], SamplingParams(n=width, temperature=0.8, max_tokens=max_tokens, top_logprobs=10))
    return prefill, sum(len(s) for s in row) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["transformers", "vllm"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    from llm_tts.backends.cpu_dtype import auto_cpu_dtype, cpu_has_native_bf16
    from llm_tts.models import ensure_embedded_model

    print(
        f"native bfloat16 on this CPU: {cpu_has_native_bf16()}; dtype='auto' picks {auto_cpu_dtype(ensure_embedded_model())}"
    )
    for name in args.backends:
        backends = {dt: make(name, dt) for dt in ("bfloat16", "float32")}
        for b in backends.values():
            timings(b, 2, 4, salt=-1)  # warm-up
        runs: dict[str, list[tuple[float, float]]] = {dt: [] for dt in backends}
        for r in range(args.repeats):
            for dt, b in backends.items():
                runs[dt].append(timings(b, args.width, args.max_tokens, salt=r))
        med = {dt: (statistics.median(p for p, _ in v), statistics.median(t for _, t in v)) for dt, v in runs.items()}
        (bp, bt), (fp, ft) = med["bfloat16"], med["float32"]
        print(
            f"{name}: prefill {bp * 1000:.0f} ms bf16 vs {fp * 1000:.0f} ms fp32 ({bp / fp:.1f}x faster in fp32); "
            f"decoding {args.width} x {args.max_tokens} tokens {bt:.0f} vs {ft:.0f} tok/s ({ft / bt:.1f}x)",
            flush=True,
        )
        for b in backends.values():
            b.close()


if __name__ == "__main__":
    main()
