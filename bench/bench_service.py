"""What the HTTP service costs, and what serving requests concurrently buys.

(1) Latency the HTTP layer adds: the same tiny request (1 path, 1 token, greedy) run in-process
    with ``engine.run`` and through a real uvicorn server on loopback (httpx keep-alive, and the
    official openai SDK), interleaved. Printed: medians, and the median per-request overhead
    "HTTP wall time - the engine's own total_s for that request" (target < 10 ms).
(2) Throughput: 8 self-consistency requests sent at once vs the same 8 one after another,
    through the same server; printed as wall times and their ratio (the baseline is sequential).
(3) Serving vs offline (--batch-requests N): N self-consistency requests sent at once through
    the service, against the same work (N prompts x num_paths samples) submitted to the same
    engine as one offline ``generate`` call; printed as generated tokens per second and their
    ratio (target on a GPU with N=32: >= 0.8).

    VLLM_CPU_KVCACHE_SPACE=1 .venv/bin/python bench/bench_service.py --backend vllm
    python bench/bench_service.py --backend vllm --skip-latency --skip-throughput --batch-requests 32  # GPU
    .venv/bin/python bench/bench_service.py --backend transformers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

QUESTIONS = [
    f"What is {a} + {b}? Put the answer in \\boxed{{}}."
    for a, b in [(12, 30), (7, 8), (21, 21), (5, 60), (33, 9), (14, 14), (45, 11), (9, 90)]
]


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """A uvicorn server for ``app`` on a free loopback port, stopped on exit; yields its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def bench_latency(engine: Any, url: str, repeats: int) -> None:
    import httpx
    import openai

    from llm_tts.config import TTSConfig
    from llm_tts.messages import coerce_messages

    fields = {"num_paths": 1, "max_tokens": 1, "temperature": 0.0}
    messages = [{"role": "user", "content": "Say hi."}]
    body = {"messages": messages, **fields}
    config, chat = TTSConfig.create(**fields), coerce_messages(messages)
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    local, http, overhead, via_sdk, sdk_overhead = [], [], [], [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(repeats + 3):  # 3 warm-up rounds
            t = time.perf_counter()
            engine.run(chat, config)
            t_local = time.perf_counter() - t

            t = time.perf_counter()
            r = client.post("/v1/chat/completions", json=body)
            t_http = time.perf_counter() - t
            r.raise_for_status()
            engine_s = r.json()["choices"][0]["tts_metadata"]["timings"]["total_s"]

            t = time.perf_counter()
            out = sdk.chat.completions.create(
                model=engine.backend.model_name,
                messages=messages,
                max_tokens=1,
                temperature=0.0,
                extra_body={"num_paths": 1},
            )
            t_sdk = time.perf_counter() - t
            sdk_engine_s = out.choices[0].model_extra["tts_metadata"]["timings"]["total_s"]
            if i >= 3:
                local.append(t_local)
                http.append(t_http)
                overhead.append(t_http - engine_s)
                via_sdk.append(t_sdk)
                sdk_overhead.append(t_sdk - sdk_engine_s)
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"(1) latency, median of {repeats} tiny requests (1 path, 1 token):")
    print(f"    in-process engine.run          {ms(local):8.2f} ms  (baseline)")
    print(
        f"    HTTP, httpx keep-alive         {ms(http):8.2f} ms  ratio {statistics.median(http) / statistics.median(local):.3f}"
    )
    print(
        f"    HTTP, openai SDK               {ms(via_sdk):8.2f} ms  ratio {statistics.median(via_sdk) / statistics.median(local):.3f}"
    )
    print(
        f"    added by the HTTP layer (wall - engine total_s): httpx {ms(overhead):.2f} ms, SDK {ms(sdk_overhead):.2f} ms"
        f"  [target < 10 ms]"
    )


def bench_throughput(url: str, model: str, paths: int, max_tokens: int) -> None:
    import httpx

    def body(q: str) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": "user", "content": q}],
            "tts_strategy": "self_consistency",
            "num_paths": paths,
            "max_tokens": max_tokens,
            "temperature": 0.7,
        }

    with httpx.Client(base_url=url, timeout=600) as client:  # warm-up
        client.post("/v1/chat/completions", json=body(QUESTIONS[0])).raise_for_status()
        t = time.perf_counter()
        for q in QUESTIONS:
            client.post("/v1/chat/completions", json=body(q)).raise_for_status()
        sequential = time.perf_counter() - t

    async def all_at_once() -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            rs = await asyncio.gather(*(client.post("/v1/chat/completions", json=body(q)) for q in QUESTIONS))
            return [r.raise_for_status().json()["usage"]["completion_tokens"] for r in rs]

    t = time.perf_counter()
    tokens = asyncio.run(all_at_once())
    concurrent = time.perf_counter() - t
    n = len(QUESTIONS)
    print(f"(2) throughput, {n} self_consistency requests (num_paths={paths}, max_tokens={max_tokens}):")
    print(f"    one after another  {sequential:8.2f} s  {n / sequential:.3f} req/s  (baseline)")
    print(f"    all at once        {concurrent:8.2f} s  {n / concurrent:.3f} req/s  ({sum(tokens)} completion tokens)")
    print(f"    speed-up (sequential / concurrent wall time): {sequential / concurrent:.2f}x")


def bench_offline_vs_service(engine: Any, url: str, requests: int, paths: int, max_tokens: int) -> None:
    import httpx

    from llm_tts.backends.base import SamplingParams
    from llm_tts.messages import coerce_messages

    questions = [f"What is {a} + {a * 7 % 50}? Put the answer in \\boxed{{}}." for a in range(requests)]

    def body(q: str) -> dict[str, Any]:
        return {
            "model": engine.backend.model_name,
            "messages": [{"role": "user", "content": q}],
            "tts_strategy": "self_consistency",
            "num_paths": paths,
            "max_tokens": max_tokens,
            "temperature": 0.7,
        }

    async def serve_all() -> int:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            rs = await asyncio.gather(*(client.post("/v1/chat/completions", json=body(q)) for q in questions))
            return sum(r.raise_for_status().json()["usage"]["completion_tokens"] for r in rs)

    prompts = [engine.backend.render_chat(coerce_messages(q)) for q in questions]
    params = SamplingParams(n=paths, temperature=0.7, max_tokens=max_tokens, logprobs=False)
    engine.backend.generate(prompts[:2], params)  # warm-up
    results = []
    for _ in range(2):  # interleaved, best of two each
        t = time.perf_counter()
        out = engine.backend.generate(prompts, params)
        offline_tokens, offline_s = sum(len(s) for row in out for s in row), time.perf_counter() - t
        t = time.perf_counter()
        served_tokens = asyncio.run(serve_all())
        served_s = time.perf_counter() - t
        results.append((offline_tokens / offline_s, served_tokens / served_s, offline_tokens, served_tokens))
    offline_tps = max(r[0] for r in results)
    served_tps = max(r[1] for r in results)
    print(
        f"(3) {requests} concurrent self_consistency requests (num_paths={paths}, max_tokens={max_tokens}) vs one offline batch:"
    )
    print(f"    offline generate, one call   {offline_tps:9.1f} tok/s  (baseline; {results[-1][2]} tokens)")
    print(f"    through the service          {served_tps:9.1f} tok/s  ({results[-1][3]} tokens)")
    print(f"    ratio service / offline: {served_tps / offline_tps:.3f}  [target >= 0.8]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="transformers", help="transformers or vllm")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--paths", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--batch-requests", type=int, default=0, help="(3): this many concurrent requests vs one offline batch"
    )
    parser.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2)")
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from llm_tts.engine import TTSEngine
    from llm_tts.service import ServiceSettings, create_app

    engine = TTSEngine.create(args.model, backend=args.backend)
    concurrency = max(len(QUESTIONS), args.batch_requests)
    app = create_app(engine, ServiceSettings(max_concurrency=concurrency))
    try:
        with serving(app) as url:
            print(f"backend {engine.backend.name}: {engine.backend.model_name}, server {url}, {os.cpu_count()} CPUs")
            if not args.skip_latency:
                bench_latency(engine, url, args.repeats)
            if not args.skip_throughput:
                bench_throughput(url, engine.backend.model_name, args.paths, args.max_tokens)
            if args.batch_requests:
                bench_offline_vs_service(engine, url, args.batch_requests, args.paths, args.max_tokens)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
