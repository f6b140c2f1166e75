"""Start and stop vLLM's own OpenAI server (CPU build) on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SERVED_NAME = "smollm2"


def start_vllm_server(
    model_dir: str | Path,
    log_path: Path,
    *,
    dtype: str = "float32",
    kv_cache_gib: int = 1,
    omp_threads: int | None = 1,
    startup_timeout: float = 300.0,
    max_logprobs: int | None = None,
) -> tuple[subprocess.Popen, str]:
    """``vllm serve`` on a free 127.0.0.1 port; returns the process and the API base URL (…/v1)
    once ``/health`` answers. The server runs in its own process group (see stop_vllm_server).

    ``omp_threads`` unbinds and caps vLLM's OpenMP threads: on a small machine shared with other
    jobs, threads bound to every core spin against each other (measured here: minutes for 64
    tokens, against about two seconds for 32 with one unbound thread)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if omp_threads is not None:
        env.update(OMP_NUM_THREADS=str(omp_threads), VLLM_CPU_OMP_THREADS_BIND="nobind")
    # `python -m` because the `vllm` console script looks up the "vllm" distribution (ours is vllm-cpu).
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--max-num-seqs",
        "16",
        "--disable-log-stats",
        "--dtype",
        dtype,
    ]
    if max_logprobs is not None:
        cmd += ["--max-logprobs", str(max_logprobs)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + startup_timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return proc, f"{url}/v1"
            except httpx.HTTPError:
                pass
            if time.monotonic() > give_up:
                raise RuntimeError(
                    f"vllm serve was not healthy after {startup_timeout:.0f} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(1)
    except BaseException:
        stop_vllm_server(proc)
        raise


def stop_vllm_server(proc: subprocess.Popen) -> None:
    """Stop the server and its engine-core child (its whole process group): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
