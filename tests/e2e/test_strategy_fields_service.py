"""Over HTTP, the strategies' declarations are OpenAI-shaped 400s naming the field, sent before
any stream starts. Model-free: the scripted fake backend (tests/fakes.py) serves on loopback."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from fakes import FakeScriptedBackend
from llm_tts.engine import TTSEngine
from llm_tts.service import ServiceSettings, create_app

MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def client(serve_app):
    backend = FakeScriptedBackend({"": ["The answer is 5."]})
    backend.capabilities = replace(backend.capabilities, logprobs=False)  # a fake API without logprobs
    url = serve_app(create_app(TTSEngine(backend), ServiceSettings()))
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def _error(response: httpx.Response, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    return str(error["message"])


def test_fake_backend_a_foreign_field_is_a_400_naming_it_and_its_strategies(client) -> None:
    body = {"messages": MESSAGES, "tts_strategy": "self_consistency", "tts_beam_size": 4}
    message = _error(client.post("/v1/chat/completions", json=body), "tts_beam_size")
    assert "self_consistency does not take it" in message and "beam_search" in message


@pytest.mark.parametrize("stream", [False, True])
def test_fake_backend_deepconf_without_logprobs_is_a_400_before_a_stream_starts(client, stream: bool) -> None:
    body = {"messages": MESSAGES, "tts_strategy": "deepconf", "stream": stream}
    assert "logprobs" in _error(client.post("/v1/chat/completions", json=body), "tts_strategy")


def test_fake_backend_the_same_request_runs_with_a_strategy_that_needs_no_logprobs(client) -> None:
    body = {"messages": MESSAGES, "tts_strategy": "self_consistency", "num_paths": 1}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "The answer is 5."
