"""Transformers backend on the embedded SmolLM2: load time cold and warm, tokens/s, peak memory.

    .venv/bin/python bench/bench_backend.py [--max-tokens 32] [--skip-cold] [--omp-compare]

Cold load = a fresh LLM_TTS_CACHE: GGUF conversion plus model load, in a fresh process. Warm
load = the same in a fresh process once the cache is filled. Throughput is measured for our
decoding loop and, as the baseline in the same run, for transformers' own ``model.generate``
with the same settings. ``--omp-compare`` also times batch-1 decoding with spinning OpenMP
workers (OMP_WAIT_POLICY=ACTIVE) against sleeping ones (PASSIVE), which matters a lot on a
shared machine with few cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see --omp-compare
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTION = "Write a long story about a dragon who learns to count."

_LOAD = """
import json, resource, time
t0 = time.perf_counter()
import torch, transformers.models.llama.modeling_llama  # imports are not load time
from transformers import AutoModelForCausalLM, AutoTokenizer
from llm_tts.models import ensure_embedded_model
from llm_tts.backends.transformers_backend import TransformersBackend
t1 = time.perf_counter()
ensure_embedded_model()
t2 = time.perf_counter()
backend = TransformersBackend()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "ensure_s": t2 - t1, "load_s": t3 - t2,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_DECODE = """
import json, sys, time
from llm_tts.backends.base import SamplingParams
from llm_tts.backends.transformers_backend import TransformersBackend
from llm_tts.messages import ChatMessage
b = TransformersBackend()
p = b.render_chat([ChatMessage(role="user", content=sys.argv[1])])
b.generate([p], SamplingParams(temperature=0.0, max_tokens=2))
t = time.perf_counter()
seg = b.generate([p], SamplingParams(temperature=0.0, max_tokens=int(sys.argv[2])))[0][0]
print(json.dumps({"tok_s": len(seg) / (time.perf_counter() - t)}))
"""


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def tok_per_s(fn, repeats: int = 2) -> tuple[float, int]:
    """Best of ``repeats`` runs: tokens generated / seconds (the machine may be shared)."""
    best, tokens = 0.0, 0
    for _ in range(repeats):
        t = time.perf_counter()
        tokens = fn()
        best = max(best, tokens / (time.perf_counter() - t))
    return best, tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--omp-compare", action="store_true")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )

    # -- load time: cold (fresh cache) and warm, each in a fresh process ----------------------
    if not args.skip_cold:
        with tempfile.TemporaryDirectory(prefix="llm-tts-bench-cache-") as cache:
            cold = run_child(_LOAD, env={"LLM_TTS_CACHE": cache})
            warm = run_child(_LOAD, env={"LLM_TTS_CACHE": cache})
        cold_total, warm_total = cold["ensure_s"] + cold["load_s"], warm["ensure_s"] + warm["load_s"]
        print(
            f"load cold: {cold_total:7.2f} s  (conversion {cold['ensure_s']:.2f} s + load {cold['load_s']:.2f} s; "
            f"peak RSS {cold['peak_rss_mb']:.0f} MB)"
        )
        print(
            f"load warm: {warm_total:7.2f} s  (cache check {warm['ensure_s']:.3f} s + load {warm['load_s']:.2f} s; "
            f"peak RSS {warm['peak_rss_mb']:.0f} MB)"
        )
        print(
            f"  ratio cold/warm: {cold_total / warm_total:.1f}x   (python imports, not counted: {warm['import_s']:.1f} s)"
        )

    # -- throughput: our loop vs model.generate at batch 1 and 8 -------------------------------
    import torch

    from llm_tts.backends.base import SamplingParams
    from llm_tts.backends.transformers_backend import TransformersBackend
    from llm_tts.messages import ChatMessage

    backend = TransformersBackend()
    p = backend.render_chat([ChatMessage(role="user", content=QUESTION)])
    n_max = args.max_tokens
    backend.generate([p], SamplingParams(temperature=0.0, max_tokens=2))  # warm-up
    print(
        f"throughput: prompt {len(p)} tokens, up to {n_max} new tokens, sampling at temperature 1 "
        f"(seed 0), device {backend.device}, dtype {backend.dtype}"
    )

    def ours(batch: int) -> int:
        rows = backend.generate([p], SamplingParams(n=batch, temperature=1.0, max_tokens=n_max, seed=0))
        return sum(len(s) for s in rows[0])

    def hf_generate(batch: int) -> int:
        ids = torch.tensor([p], device=backend.device)
        with torch.inference_mode():
            out = backend.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=n_max,
                num_return_sequences=batch,
                pad_token_id=backend.tokenizer.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,  # it, too, must hand back per-token scores
            )
        new = out.sequences[:, len(p) :]
        return int((new != backend.tokenizer.pad_token_id).sum()) + int(
            (new == backend.tokenizer.pad_token_id).any(1).sum()
        )

    results = {}
    for batch in (1, 8):
        ours_tps, ours_tok = tok_per_s(lambda b=batch: ours(b))
        hf_tps, hf_tok = tok_per_s(lambda b=batch: hf_generate(b))
        results[batch] = ours_tps
        print(
            f"batch {batch}: ours {ours_tps:7.1f} tok/s ({ours_tok} tokens)   model.generate {hf_tps:7.1f} tok/s "
            f"({hf_tok} tokens)   ratio ours/generate {ours_tps / hf_tps:.2f}"
        )
    print(f"  ratio batch8/batch1 throughput (ours): {results[8] / results[1]:.2f}x")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (model + batch-8 decoding + generate baseline): {peak_mb:.0f} MB")

    if args.omp_compare:
        tokens = str(min(n_max, 8))
        passive = run_child(_DECODE, QUESTION, tokens, env={"OMP_WAIT_POLICY": "PASSIVE"})["tok_s"]
        active = run_child(_DECODE, QUESTION, tokens, env={"OMP_WAIT_POLICY": "ACTIVE"})["tok_s"]
        print(
            f"OMP_WAIT_POLICY batch 1 greedy: PASSIVE {passive:.2f} tok/s, ACTIVE {active:.2f} tok/s, "
            f"ratio PASSIVE/ACTIVE {passive / active:.1f}x"
        )


if __name__ == "__main__":
    main()
