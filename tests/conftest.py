"""Session fixtures: each real model is loaded once per test session."""

from __future__ import annotations

import os

import pytest

# vLLM on CPU: in-process engine core (fast start), a small KV cache for tests.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
