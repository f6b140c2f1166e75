"""What sessions cost, and whether the service keeps up with an RL trainer's concurrent agents.

(1) Recording overhead: the same requests (1 path, greedy, a few tokens), ``--concurrency`` at a
    time, on /v1 and on a session's /sessions/{id}/v1 (SQLite store, every record committed
    before its response), interleaved rounds; printed as requests/s and their ratio (target:
    session within 10% of /v1, ratio >= 0.9).
(2) Building samples for 1,000 records (copies of real records: a two-turn conversation and a
    beam search, so merging, alignment and candidates all run); printed as seconds. Then the
    store's size: the SQLite file after writing those records, per record (and the JSON size).
(3) 64 concurrent requests through the service (default concurrency: what the engine batches)
    against the same work as one offline engine ``generate`` call (bench_service.py's check);
    target >= 0.8.

    VLLM_CPU_KVCACHE_SPACE=1 .venv/bin/python bench/bench_sessions.py --backend vllm
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_service import bench_offline_vs_service, serving

MESSAGES = [{"role": "user", "content": "Name a prime number between 10 and 20."}]
TOOL = {"role": "tool", "tool_call_id": "call_1", "content": "checked: it is prime"}


def requests_per_second(base_url: str, model: str, requests: int, concurrency: int, max_tokens: int) -> float:
    import openai

    async def run() -> float:
        client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=600)
        gate = asyncio.Semaphore(concurrency)
        extra = {"num_paths": 1, "return_token_ids": True}

        async def one(i: int) -> None:
            async with gate:
                await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": f"Say the number {i}."}],
                    max_tokens=max_tokens,
                    temperature=0.0,
                    logprobs=True,
                    extra_body=extra,
                )

        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - t
        await client.close()
        return requests / elapsed

    return asyncio.run(run())


def bench_overhead(url: str, model: str, requests: int, concurrency: int, max_tokens: int, rounds: int) -> None:
    import httpx

    requests_per_second(url, model, concurrency, concurrency, max_tokens)  # warm-up
    plain, recorded = [], []
    for _ in range(rounds):
        plain.append(requests_per_second(url, model, requests, concurrency, max_tokens))
        sid = httpx.post(f"{url}/sessions", json={}).json()["id"]
        recorded.append(requests_per_second(f"{url}/sessions/{sid}", model, requests, concurrency, max_tokens))
        assert httpx.get(f"{url}/sessions/{sid}").json()["num_records"] == requests
    best_plain, best_recorded = max(plain), max(recorded)
    print(
        f"(1) {requests} requests, {concurrency} at a time (1 path, {max_tokens} tokens, logprobs), best of {rounds}:"
    )
    print(f"    /v1                       {best_plain:8.2f} req/s  (baseline)")
    print(f"    /sessions/{{id}}/v1         {best_recorded:8.2f} req/s")
    print(f"    ratio session / v1: {best_recorded / best_plain:.3f}  [target >= 0.9]")


def sample_records(url: str, model: str) -> list[Any]:
    """Real records: a two-turn conversation with a tool message between, and a beam search."""
    import httpx
    import openai

    from llm_tts.sessions import SessionRecord

    sid = httpx.post(f"{url}/sessions", json={}).json()["id"]
    client = openai.OpenAI(base_url=f"{url}/sessions/{sid}/v1", api_key="x", max_retries=0, timeout=600)
    first = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=16, extra_body={"num_paths": 1})
    history = [*MESSAGES, {"role": "assistant", "content": first.choices[0].message.content}, TOOL]
    client.chat.completions.create(model=model, messages=history, max_tokens=16, extra_body={"num_paths": 1})
    beam = {
        "tts_strategy": "beam_search",
        "tts_beam_size": 2,
        "tts_candidates_per_step": 2,
        "tts_max_steps": 3,
        "tts_step_max_tokens": 8,
    }
    client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=24, extra_body=beam)
    records = httpx.get(f"{url}/sessions/{sid}").json()["records"]
    return [SessionRecord.model_validate(r) for r in records]


def bench_samples_and_store(url: str, model: str, eot: list[int], count: int) -> None:
    from llm_tts.sessions import build_samples
    from llm_tts.sessions.records import SessionInfo, SessionOptions
    from llm_tts.sessions.sqlite_store import SQLiteSessionStore

    base = sample_records(url, model)
    records = []
    while len(records) < count:  # whole conversations, each copy with its own ids
        tag = len(records)
        ids = {r.id: f"{r.id}-{tag}" for r in base}
        for r in base[: count - len(records)]:
            records.append(
                r.model_copy(
                    update={
                        "id": ids[r.id],
                        "session_id": "bench",
                        "continued_from": ids.get(r.continued_from or ""),
                    }
                )
            )
    t = time.perf_counter()
    samples = build_samples(records, eot)
    build_s = time.perf_counter() - t
    print(f"(2) samples from {len(records)} records: {build_s:.3f} s ({len(samples)} samples)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sessions.sqlite3"
        store = SQLiteSessionStore(path)
        now = time.time()
        info = SessionInfo(
            id="bench", created_at=now, last_used_at=now, ttl_s=3600, options=SessionOptions(), end_of_turn_ids=eot
        )
        store.create(info, max_sessions=10)
        t = time.perf_counter()
        for r in records:
            store.add_record(r, max_records=len(records))
        write_s = time.perf_counter() - t
        store.close()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
    json_bytes = sum(len(r.model_dump_json()) for r in records) / len(records)
    print(
        f"    SQLite store: {size / len(records):,.0f} bytes per record ({json_bytes:,.0f} bytes of JSON each; "
        f"written at {len(records) / write_s:,.0f} records/s, one commit each)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="vllm", help="vllm or transformers")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--batch-requests", type=int, default=64)
    parser.add_argument("--batch-paths", type=int, default=2)
    parser.add_argument("--batch-max-tokens", type=int, default=32)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from llm_tts.engine import TTSEngine
    from llm_tts.service import ServiceSettings, create_app

    engine = TTSEngine.create(backend=args.backend)
    model = engine.backend.model_name
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServiceSettings(session_db=str(Path(tmp) / "sessions.sqlite3"))  # default concurrency
        app = create_app(engine, settings)
        try:
            with serving(app) as url:
                import httpx

                health = httpx.get(f"{url}/health").json()
                print(
                    f"backend {engine.backend.name}: {model}, {os.cpu_count()} CPUs, "
                    f"default max_concurrency {health['max_concurrency']}"
                )
                bench_overhead(url, model, args.requests, args.concurrency, args.max_tokens, args.rounds)
                eot = sorted(getattr(engine.backend, "eos_token_ids", ()))
                bench_samples_and_store(url, model, eot, args.records)
                bench_offline_vs_service(engine, url, args.batch_requests, args.batch_paths, args.batch_max_tokens)
        finally:
            engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
