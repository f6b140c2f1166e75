"""Throughput at scale against the physical limit: llm-tts vs vLLM's own offline generation.

Each workload sends many concurrent requests through the llm-tts service (a real uvicorn
server on loopback, the official openai client) on one vLLM engine:

- ``sc``: self-consistency, ``--paths`` paths per question (target >= 0.9 of offline);
- ``beam``: beam search, 4 beams x 4 candidates per step (target >= 0.8);
- ``pf``: particle filtering, 8 particles (target >= 0.8);
- ``code``: self-consistency with code execution in the bubblewrap sandbox (skipped without it).

Every engine request a workload makes is recorded (its prompt token ids and each sample's
output length). The baseline then replays exactly those sequences on the same engine the way
``LLM.generate`` runs them (all added at once, then ``LLMEngine.step`` until done; each with
``max_tokens = min_tokens = its length`` and ``ignore_eos``): the same number of sequences, the
same prompts and lengths, the same engine settings, with none of a search's waiting between
steps. Printed per workload: generated tokens per second of both and their ratio.

    python bench/bench_gpu_throughput.py [--model DIR] [--questions 256] [--searches 64] [--eager]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import time
from concurrent.futures import Future
from typing import Any

from bench_service import serving

TARGETS = {"sc": 0.9, "beam": 0.8, "pf": 0.8, "code": 0.8}


def questions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(2, 9)
        out.append(f"A shop has {a} boxes with {c} apples each and sells {b} apples. How many apples are left?")
    return out


class Recorder:
    """Wraps the backend's engine loop: remembers every request (prompt ids, futures) it runs."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.requests: list[tuple[list[int], Future]] = []
        self._submit = loop.submit
        loop.submit = self.submit

    def submit(self, prompts: Any, params: Any, convert: Any = None, updates: Any = None) -> list[Any]:
        futures = self._submit(prompts, params, convert=convert, updates=updates)
        for prompt, future in zip(prompts, futures):
            self.requests.append((list(prompt["prompt_token_ids"]), future))
        return futures

    def sequences(self) -> list[tuple[list[int], int]]:
        """(prompt ids, generated length) of every sample that finished; aborted ones are left out."""
        seqs = []
        for prompt, future in self.requests:
            if future.cancelled() or future.exception() is not None:
                continue
            out = Future.result(future)  # the engine's own output, before the backend's conversion
            seqs.extend((prompt, len(c.token_ids)) for c in out.outputs if len(c.token_ids) > 0)
        self.requests.clear()
        return seqs


def offline_replay(engine: Any, seqs: list[tuple[list[int], int]], temperature: float) -> tuple[int, float]:
    """What ``LLM.generate`` does with these sequences: add all, step until done. Tokens, seconds."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    start = time.perf_counter()
    for i, (prompt, length) in enumerate(seqs):
        params = SamplingParams(temperature=temperature, max_tokens=length, min_tokens=length, ignore_eos=True)
        engine.add_request(f"offline-{time.monotonic_ns()}-{i}", TokensPrompt(prompt_token_ids=prompt), params)
    tokens = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                tokens += sum(len(c.token_ids) for c in out.outputs)
    return tokens, time.perf_counter() - start


async def send_all(url: str, model: str, bodies: list[dict[str, Any]]) -> tuple[float, int]:
    """Send every body at once; returns the wall time and the number of failed requests."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=3600)
    start = time.perf_counter()
    replies = await asyncio.gather(
        *(client.chat.completions.create(model=model, **b) for b in bodies), return_exceptions=True
    )
    wall = time.perf_counter() - start
    await client.close()
    failed = [r for r in replies if isinstance(r, BaseException)]
    if failed:
        print(f"  {len(failed)} requests failed, first: {failed[0]!r}"[:400])
    return wall, len(failed)


def workloads(args: argparse.Namespace) -> dict[str, tuple[list[dict[str, Any]], float]]:
    sys_msg = {
        "role": "system",
        "content": "Reason step by step, one step per line, then give the answer in \\boxed{}.",
    }
    many, few = questions(args.questions, 0), questions(args.searches, 1)

    def body(q: str, **extra: Any) -> dict[str, Any]:
        return {"messages": [sys_msg, {"role": "user", "content": q}], "temperature": 0.8, "extra_body": extra}

    step = dict(tts_max_steps=8, tts_step_max_tokens=32, max_tokens=256)
    out = {
        "sc": (
            [
                {**body(q, tts_strategy="self_consistency", num_paths=args.paths), "max_tokens": args.max_tokens}
                for q in many
            ],
            0.8,
        ),
        "beam": (
            [
                body(
                    q,
                    tts_strategy="beam_search",
                    tts_scorer="entropy",
                    tts_beam_size=4,
                    tts_candidates_per_step=4,
                    **step,
                )
                for q in few
            ],
            0.8,
        ),
        "pf": (
            [
                body(q, tts_strategy="particle_filtering", tts_scorer="entropy", tts_num_trajectories=8, **step)
                for q in few
            ],
            0.8,
        ),
    }
    if shutil.which("bwrap"):
        code_sys = {
            "role": "system",
            "content": "Write Python in a ```python block to compute the answer, then give it in \\boxed{}.",
        }
        out["code"] = (
            [
                {
                    "messages": [code_sys, {"role": "user", "content": q}],
                    "temperature": 0.8,
                    "max_tokens": args.max_tokens,
                    "extra_body": {"tts_strategy": "self_consistency", "num_paths": 8, "code_execution": True},
                }
                for q in few
            ],
            0.8,
        )
    else:
        print("code: skipped (bubblewrap, the sandbox of code_execution, is not installed)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2)")
    ap.add_argument("--questions", type=int, default=256, help="concurrent self-consistency requests")
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--searches", type=int, default=64, help="concurrent step searches per search workload")
    ap.add_argument("--workloads", nargs="*", default=["sc", "beam", "pf", "code"])
    ap.add_argument("--eager", action=argparse.BooleanOptionalAction, default=False, help="vLLM enforce_eager")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    args = ap.parse_args()

    from llm_tts.backends.vllm_backend import VLLMBackend
    from llm_tts.engine import TTSEngine
    from llm_tts.service import ServiceSettings, create_app

    start = time.perf_counter()
    backend = VLLMBackend(
        args.model, max_model_len=4096, gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.eager
    )
    print(f"engine start: {time.perf_counter() - start:.1f} s (enforce_eager={args.eager})")
    recorder = Recorder(backend._loop)
    settings = ServiceSettings(max_concurrency=1024)
    rows = []
    with serving(create_app(TTSEngine(backend), settings)) as url:
        for name, (bodies, temperature) in workloads(args).items():
            if name not in args.workloads:
                continue
            recorder.sequences()  # forget anything earlier
            wall, failed = asyncio.run(send_all(url, backend.model_name, bodies))
            seqs = recorder.sequences()
            tokens = sum(length for _, length in seqs)  # the finished samples' tokens: what the replay makes
            base_tokens, base_wall = offline_replay(backend.engine, seqs, temperature)
            ours, offline = tokens / wall, base_tokens / base_wall
            rows.append((name, len(bodies), failed, len(seqs), tokens, ours, offline, ours / offline))
            print(
                f"{name}: {len(bodies)} requests ({failed} failed), {len(seqs)} sequences, "
                f"{ours:.0f} tok/s vs offline {offline:.0f} tok/s -> {ours / offline:.3f}",
                flush=True,
            )
    backend.close()
    print("\n| workload | requests | sequences | tokens | llm-tts tok/s | vLLM offline tok/s | ratio | target |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, failed, nseq, tokens, ours, offline, ratio in rows:
        mark = "met" if ratio >= TARGETS[name] else "MISSED"
        print(
            f"| {name} | {n}{f' ({failed} failed)' if failed else ''} | {nseq} | {tokens} | {ours:.0f} | {offline:.0f} | "
            f"{ratio:.3f} | >= {TARGETS[name]} {mark} |"
        )


if __name__ == "__main__":
    main()
