"""Session fixtures: each real model is loaded once per test session."""

from __future__ import annotations

import os

import pytest

# vLLM on CPU: a small KV cache for tests (the backend itself keeps the engine core in-process
# on CPU; on a GPU it stays a separate process, whose statistics vLLM reports completely).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on this shared 2-core machine spinning workers
# made a SmolLM2 decode step 20x slower (4.9 s vs 0.25 s per token, bench/bench_backend.py notes).
# Must be set before torch starts its OpenMP runtime, hence here at import time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def embedded_model_dir():
    """The converted embedded model (converted once into the user's cache if needed)."""
    from llm_tts.models import ensure_embedded_model

    return ensure_embedded_model()


@pytest.fixture(scope="session")
def hf_backend(embedded_model_dir):
    """The transformers backend on the embedded model, shared by the whole session."""
    from llm_tts.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend()
    yield backend
    backend.close()


# -- the llm-tts service on loopback (issue 5) -------------------------------------------------
@pytest.fixture(scope="session")
def tts_engine(hf_backend):
    """TTSEngine on the session's transformers backend (the backend is closed by hf_backend)."""
    from llm_tts.engine import TTSEngine

    return TTSEngine(hf_backend)


@pytest.fixture(scope="session")
def serve_app():
    """Start an ASGI app on a real uvicorn server at 127.0.0.1:<free port>; returns its base URL.
    Every server started this way is stopped at the end of the session; ``serve_app.stop(url)``
    stops one earlier (its lifespan ends: a restart test starts a new app after it)."""
    import socket
    import threading
    import time

    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread]] = []
    by_url: dict[str, tuple[uvicorn.Server, threading.Thread]] = {}

    def start(app) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        give_up = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > give_up:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        running.append((server, thread))
        url = f"http://127.0.0.1:{port}"
        by_url[url] = (server, thread)
        return url

    def stop(url: str) -> None:
        server, thread = by_url[url]
        server.should_exit = True
        thread.join(timeout=30)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def service_url(serve_app, tts_engine):
    """Base URL (without /v1) of the service on the embedded model, default settings."""
    from llm_tts.service import ServiceSettings, create_app

    return serve_app(create_app(tts_engine, ServiceSettings(max_concurrency=8)))


@pytest.fixture(scope="session")
def tiny_prm_dir(tmp_path_factory, embedded_model_dir):
    """A tiny random PRM in the Qwen2.5-Math-PRM format (tests/tiny_prm.py), built once."""
    from tiny_prm import make_tiny_prm

    return make_tiny_prm(tmp_path_factory.mktemp("tiny-prm"))


# -- the vLLM backend (issue 4) -----------------------------------------------------------------
# float32 on both backends for the contract tests: bf16 rounding differs between the two engines
# and flips near-tied greedy choices; in float32 they agree token for token.
CONTRACT_DTYPE = "float32"


@pytest.fixture(scope="session")
def vllm_backend(embedded_model_dir):
    """The vLLM backend (CPU build) on the embedded model: one engine per session, small KV cache."""
    pytest.importorskip("vllm")
    from llm_tts.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(dtype=CONTRACT_DTYPE, max_model_len=2048, kv_cache_space=1)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_backend_fp32(embedded_model_dir):
    """The transformers backend in float32, to hold vLLM to the same outputs."""
    from llm_tts.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(dtype=CONTRACT_DTYPE)
    yield backend
    backend.close()


# -- vLLM's own OpenAI server on loopback (issue 7) ---------------------------------------------
@pytest.fixture(scope="session")
def vllm_server_url(embedded_model_dir, tmp_path_factory):
    """``vllm serve`` (CPU build) on the embedded model at 127.0.0.1:<free port>, float32 (greedy
    continuations agree token for token); yields the API base URL (ending in /v1). Started once
    per session, stopped (its whole process group) after it."""
    pytest.importorskip("vllm")
    from vllm_serve import start_vllm_server, stop_vllm_server

    proc, url = start_vllm_server(embedded_model_dir, tmp_path_factory.mktemp("vllm-serve") / "server.log")
    try:
        yield url
    finally:
        stop_vllm_server(proc)
