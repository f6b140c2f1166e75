"""The engine calling our own llm-tts service over HTTP through the OpenAI-compatible backend.

The service (on the embedded model, a real uvicorn server on loopback) is a chat-only API: no
tokenizer endpoint, ``n`` must be 1, and logprobs with top logprobs. The backend
finds that out by probing and runs self-consistency and logprob scorers over it, with the
service's own token usage.
"""

from __future__ import annotations

import pytest

from llm_tts.backends.openai_backend import OpenAIBackend
from llm_tts.backends.usage import metered
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import RemoteAPIError
from llm_tts.messages import ChatMessage

pytestmark = pytest.mark.timeout(600)

QUESTION = [ChatMessage(role="user", content="What is 3 + 4? Answer in \\boxed{}.")]


@pytest.fixture(scope="module")
def over_service(service_url):
    # Each request to the service is itself a TTS run: one path each keeps it a plain sample.
    backend = OpenAIBackend(base_url=f"{service_url}/v1", max_concurrency=4, extra_body={"num_paths": 1})
    yield backend
    backend.close()


def test_probe_sees_a_chat_only_api_without_logprobs_or_n(over_service):
    caps = over_service.capabilities
    assert caps.chat_only and over_service.probe.n is False
    assert caps.logprobs is True and caps.max_top_logprobs > 0 and not caps.continuation
    assert over_service.model_name  # the service's first served model


def test_self_consistency_runs_over_the_service_with_its_usage(over_service):
    engine = TTSEngine(over_service)
    with metered() as usage:
        result = engine.run(
            QUESTION, TTSConfig.create(tts_strategy="self_consistency", num_paths=2, max_tokens=24, temperature=0.7)
        )
    meta = result.metadata
    assert meta.backend == "openai" and len(meta.candidates) == 2
    assert usage.requests == 2  # n=2 fanned out: the service takes n=1 only
    assert meta.usage.completion_tokens == usage.completion_tokens > 0  # the service's own counts
    assert sum(c.status == "selected" for c in meta.candidates) == 1


def test_logprob_scorers_run_over_the_service_on_its_logprobs(over_service):
    engine = TTSEngine(over_service)
    config = TTSConfig.create(
        tts_strategy="offline_bon", tts_scorer="perplexity", tts_num_trajectories=2, max_tokens=16
    )
    result = engine.run(QUESTION, config)
    assert all(c.score is not None and 0.0 < c.score <= 1.0 for c in result.metadata.candidates)


def test_a_request_the_service_refuses_shows_its_message(service_url):
    backend = OpenAIBackend(
        base_url=f"{service_url}/v1", extra_body={"tts_strategy": "no_such_strategy"}, max_retries=0
    )
    try:
        with pytest.raises(RemoteAPIError, match="no_such_strategy") as info:
            backend.capabilities
        assert info.value.status == 400
    finally:
        backend.close()
