"""The suite's layers, its tiers (markers derived from what each test uses) and the session
fixtures: each real model is loaded once per test session. tests/README.md says where a test goes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# vLLM on CPU: a small KV cache for tests (the backend itself keeps the engine core in-process
# on CPU; on a GPU it stays a separate process, whose statistics vLLM reports completely).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on this shared 2-core machine spinning workers
# made a SmolLM2 decode step 20x slower (4.9 s vs 0.25 s per token, bench/bench_backend.py notes).
# Must be set before torch starts its OpenMP runtime, hence here at import time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "model", "e2e")  # run in this order: the cheapest failures first
# Every fixture that loads a model depends on this one, so a test uses a model when it is in the
# test's fixture closure (``item.fixturenames``), requested directly or through another. MODEL_FIXTURES
# are the fixtures below that do: a test may name one in a parameter and get it with
# ``request.getfixturevalue``. A test that loads a model some other way (converting the GGUF in a
# child, a notebook) says so with ``@pytest.mark.model``.
MODEL_FIXTURE = "embedded_model_dir"
VLLM_FIXTURES = frozenset({"vllm_backend", "vllm_server_url"})
MODEL_FIXTURES = VLLM_FIXTURES | {
    MODEL_FIXTURE,
    "hf_backend",
    "hf_backend_fp32",
    "tts_engine",
    "service_url",
    "tiny_prm_dir",
}
NOT_FAST = ("model", "vllm", "gpu", "slow")  # marks a test may carry by hand: it needs more than fakes


def _layer(item: pytest.Item) -> str:
    parts = item.path.resolve().relative_to(TESTS).parts
    if len(parts) < 2 or parts[0] not in LAYERS:
        raise pytest.UsageError(
            f"{item.nodeid}: a test lives in tests/unit, tests/model or tests/e2e (tests/README.md)"
        )
    return parts[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test from what it uses: ``fast`` when no model is in its fixture closure (the
    fast tier; the guard below makes it fail if it loads one anyway), ``model`` otherwise, plus
    ``vllm`` on a vLLM engine or server and ``e2e`` in tests/e2e. A test in tests/unit that asks
    for a model is a collection error. Layers run in LAYERS order."""
    for item in items:
        layer = _layer(item)
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        names |= {v for v in callspec.params.values() if isinstance(v, str)} if callspec else set()
        if names & MODEL_FIXTURES or any(item.get_closest_marker(m) for m in NOT_FAST):
            if layer == "unit":
                raise pytest.UsageError(f"{item.nodeid} uses a model: it belongs in tests/model or tests/e2e")
            item.add_marker(pytest.mark.model)
        else:
            item.add_marker(pytest.mark.fast)
        if names & VLLM_FIXTURES:
            item.add_marker(pytest.mark.vllm)
        if "vllm_server_url" in names:
            # One worker runs every test on `vllm serve` (pytest -n 2 --dist loadgroup): a session
            # fixture is per worker, and this one costs ~40 s of CPU to start.
            item.add_marker(pytest.mark.xdist_group("vllm_server"))
        if layer == "e2e":
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: LAYERS.index(_layer(item)))  # stable: files keep their order


class ModelLoadedInFastTier(RuntimeError):
    """A test without a model fixture tried to load a model."""


@pytest.fixture(autouse=True)
def _fast_tier_loads_no_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory):
    """Make a ``fast`` test fail loudly if it loads a model. Every model is resolved through
    ``llm_tts.models`` (the embedded model, a .gguf, a hub id): in-process that is refused here,
    and a child process finds a model cache it cannot create and no hub. The test also fails if the
    code under test swallowed the refusal."""
    if request.node.get_closest_marker("fast") is None:
        yield
        return
    import llm_tts.models

    refused: list[str] = []

    def refuse() -> None:
        refused.append("llm_tts.models.ensure_embedded_model()")
        raise ModelLoadedInFastTier(
            f"{request.node.nodeid} loaded a model with no model fixture: request one (e.g. "
            f"{MODEL_FIXTURE}) and put the test in tests/model or tests/e2e, or use tests/fakes.py"
        )

    monkeypatch.setattr(llm_tts.models, "ensure_embedded_model", refuse)
    # A file where a folder must be: the model cache cannot be created, so no converted model is
    # found or made (a .gguf converts into the cache too), in-process or in a child.
    blocker = tmp_path_factory.getbasetemp() / "fast-tier-tests-load-no-model"
    blocker.touch()
    monkeypatch.setenv("LLM_TTS_CACHE", str(blocker / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    if refused:
        pytest.fail(f"{request.node.nodeid} loaded a model in the fast tier: {refused[0]}", pytrace=False)


@pytest.fixture(scope="session")
def embedded_model_dir():
    """The converted embedded model (converted once into the user's cache if needed)."""
    from llm_tts.models import ensure_embedded_model

    return ensure_embedded_model()


@pytest.fixture(scope="session")
def tts_engine(embedded_model_dir):
    """TTSEngine on the transformers backend and the embedded model, shared by the whole session.
    It is the in-process engine cache's entry, so ``ChatTTS(backend="transformers")`` in a test
    runs on it too instead of loading the model a second time; closed with the cache at the end."""
    from llm_tts.integrations.inprocess import clear_engine_cache, shared_engine

    yield shared_engine(None, "transformers")
    clear_engine_cache()


@pytest.fixture(scope="session")
def hf_backend(tts_engine):
    """The transformers backend on the embedded model, shared by the whole session."""
    return tts_engine.backend


# -- the llm-tts service on loopback -----------------------------------------------------------
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


# -- a real browser for the viewer's page -----------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (tests/browser.py): skipped where Chromium is not
    installed, a failure under CI=true (scripts/setup.sh installs it)."""
    from browser import Browser, require_browser

    require_browser()
    chromium = Browser()
    yield chromium
    chromium.quit()


# -- PostgreSQL, for the session store several replicas share -----------------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (tests/postgres_server.py), started once per session and
    stopped after it; ``postgres_server.new_database()`` gives a test a fresh database's URL.
    Without PostgreSQL installed the test skips, except under CI=true, where it fails."""
    from postgres_server import PostgresMissing, start_postgres

    try:
        server = start_postgres()
    except PostgresMissing as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {e}", pytrace=False)
        pytest.skip(str(e))
    yield server
    server.stop()


# -- the vLLM backend -------------------------------------------------------------------------
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


# -- vLLM's own OpenAI server on loopback -----------------------------------------------------
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


# -- OpenTelemetry spans -----------------------------------------------------------------------
@pytest.fixture
def exported_spans():
    """An in-memory exporter receiving every span llm_tts makes during the test (the SDK's own;
    the otel extra, in dev)."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llm_tts import spans

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans.use_tracer_provider(provider)
    yield exporter
    spans.use_tracer_provider(None)
    provider.shutdown()
