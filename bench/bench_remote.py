"""Self-consistency N=8 over an OpenAI-compatible API: wall time relative to one request.

Starts vLLM's own OpenAI server (CPU build) on the embedded model on loopback (or uses
``--base-url``), then times these, interleaved over ``--repeats`` rounds (median and min), every
sample exactly ``--max-tokens`` tokens long (``ignore_eos``) so the work per sample is equal:

- one request (one sample): the baseline;
- self_consistency N through the engine (one request with ``n=N``: the server honours n);
- self_consistency N as N parallel requests (a server without ``n``, as OpenRouter often is);
- N requests one after another (what no concurrency would cost).

    .venv/bin/python bench/bench_remote.py --paths 8 --max-tokens 32
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback launcher


def timed_rounds(methods: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Every method once per round, interleaved, so load from other jobs hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def run(base_url: str, args: argparse.Namespace) -> None:
    from llm_tts.backends.base import SamplingParams
    from llm_tts.backends.openai_backend import OpenAIBackend
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine
    from llm_tts.messages import ChatMessage

    question = [
        ChatMessage(role="user", content="What is 17 * 23? Think step by step and put the answer in \\boxed{}.")
    ]
    options = dict(base_url=base_url, provider="vllm", max_concurrency=args.paths, extra_body={"ignore_eos": True})
    backend = OpenAIBackend(**options)
    fan_out = OpenAIBackend(**options, server_n=False)  # as on a server without n
    engine = TTSEngine(backend)
    prompt = backend.render_chat(question)
    one = SamplingParams(n=1, temperature=0.7, max_tokens=args.max_tokens)
    config = TTSConfig.create(
        tts_strategy="self_consistency", num_paths=args.paths, max_tokens=args.max_tokens, temperature=0.7
    )
    print(f"server {base_url}, model {backend.model_name}, probe {backend.probe}")
    for warm in (backend, fan_out):  # probe both before timing anything
        warm.generate([prompt], one)

    n = args.paths
    times = timed_rounds(
        {
            "one request (baseline)": lambda: backend.generate([prompt], one),
            f"self_consistency N={n}, one request with n={n}": lambda: engine.run(question, config),
            f"self_consistency N={n}, {n} parallel requests": lambda: TTSEngine(fan_out).run(question, config),
            f"{n} requests one after another": lambda: [backend.generate([prompt], one) for _ in range(n)],
        },
        args.repeats,
    )
    backend.close()
    fan_out.close()

    base_median, base_min = statistics.median(times["one request (baseline)"]), min(times["one request (baseline)"])
    print(f"{args.repeats} interleaved rounds, {args.max_tokens} tokens per sample")
    print(f"{'method':<44} {'median s':>9} {'x one':>7} {'min s':>7} {'x one':>7}")
    for title, ts in times.items():
        med, low = statistics.median(ts), min(ts)
        print(f"{title:<44} {med:>9.2f} {med / base_median:>7.2f} {low:>7.2f} {low / base_min:>7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--base-url", help="an OpenAI-compatible vLLM server to use instead of starting one")
    parser.add_argument("--omp-threads", type=int, default=1, help="the started server's OpenMP threads (unbound)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` still stops the server
    if args.base_url:
        run(args.base_url, args)
        return 0
    from llm_tts.models import ensure_embedded_model
    from vllm_serve import start_vllm_server, stop_vllm_server

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_vllm_server(ensure_embedded_model(), Path(tmp) / "server.log", omp_threads=args.omp_threads)
        try:
            run(url, args)
        finally:
            stop_vllm_server(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
