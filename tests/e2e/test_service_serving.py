"""The serving class without the web framework (called directly), and a streamed request over
real HTTP that renders and tokenises its chat once."""

from __future__ import annotations

import asyncio
import json
import threading

import openai
import pytest

from llm_tts.config import TTSConfig
from llm_tts.errors import InvalidParameterError, ModelNotFoundError
from llm_tts.messages import coerce_messages
from llm_tts.service import ServiceSettings, create_app
from llm_tts.service.errors import TooManyRequestsError
from llm_tts.service.protocol import ChatCompletion, ChatCompletionRequest
from llm_tts.service.serving import CompletionStream, ServingChat

QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer briefly."}]
TINY = {"max_tokens": 16, "temperature": 0.0, "seed": 7}
BEAMS = {
    "tts_strategy": "beam_search",
    "tts_scorer": "entropy",
    "tts_beam_size": 2,
    "tts_candidates_per_step": 2,
    "tts_max_steps": 3,
    "tts_step_max_tokens": 8,
}


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest(**{"messages": QUESTION, **fields})


def test_a_streamed_request_renders_its_chat_once(serve_app, tts_engine, hf_backend, monkeypatch):
    renders = []
    render = hf_backend.render_chat
    monkeypatch.setattr(hf_backend, "render_chat", lambda msgs: renders.append(msgs) or render(msgs))
    url = serve_app(create_app(tts_engine, ServiceSettings()))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300)
    chunks = list(
        client.chat.completions.create(messages=QUESTION, model="smollm2", stream=True, max_tokens=24, extra_body=BEAMS)
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert len(renders) == 1  # checked before the 200, then run from the same plan


def test_serving_answers_a_parsed_request_without_the_web_framework(tts_engine):
    serving = ServingChat(tts_engine, ServiceSettings())
    try:
        answer = asyncio.run(serving.create_chat_completion(request(num_paths=2, **TINY)))
    finally:
        serving.close()
    assert isinstance(answer, ChatCompletion)
    local = tts_engine.run(coerce_messages(QUESTION), TTSConfig.create(num_paths=2, **TINY))
    assert answer.choices[0].message.content == local.text
    assert answer.choices[0].tts_metadata.strategy == "self_consistency"
    assert answer.usage == local.metadata.usage


def test_serving_streams_sse_events_and_path_fields_set_the_strategy(tts_engine):
    serving = ServingChat(tts_engine, ServiceSettings())

    async def main():
        stream = await serving.create_chat_completion(
            request(stream=True, max_tokens=24, **BEAMS), path_fields={"tts_strategy": "beam_search"}
        )
        assert isinstance(stream, CompletionStream)
        try:
            return [event async for event in stream]
        finally:
            stream.close()

    try:
        events = asyncio.run(main())
    finally:
        serving.close()
    assert events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    progress = [c["choices"][0]["tts_progress"] for c in chunks if "tts_progress" in c["choices"][0]]
    assert progress and all(p["strategy"] == "beam_search" for p in progress)
    assert chunks[-1]["choices"][0]["tts_metadata"]["strategy"] == "beam_search" and chunks[-1]["usage"]


def test_serving_raises_typed_errors(tts_engine):
    serving = ServingChat(tts_engine, ServiceSettings(max_budget=4))
    try:
        with pytest.raises(ModelNotFoundError):
            asyncio.run(serving.create_chat_completion(request(model="gpt-4o")))
        with pytest.raises(InvalidParameterError, match="num_paths"):
            asyncio.run(serving.create_chat_completion(request(num_paths=5)))
        with pytest.raises(InvalidParameterError, match="tts_strategy"):
            asyncio.run(
                serving.create_chat_completion(
                    request(tts_strategy="offline_bon"), path_fields={"tts_strategy": "beam_search"}
                )
            )
        assert serving.slots.active == 0
    finally:
        serving.close()


def test_a_stream_closed_before_its_first_event_frees_its_slot(tts_engine):
    """The run starts before the response does; closing the unread stream stops it (no slot leak)."""
    serving = ServingChat(tts_engine, ServiceSettings(max_concurrency=1, retry_after_s=3, queue_size=0))
    essay = [{"role": "user", "content": "Write a very long, detailed essay on the history of Rome."}]
    long_search = {
        **BEAMS,
        "tts_max_steps": 200,
        "tts_step_max_tokens": 4,
        "max_tokens": 4000,
        "tts_step_delimiter": "\n\n\n\n",
        "temperature": 1.0,
    }

    async def main():
        stream = await serving.create_chat_completion(ChatCompletionRequest(messages=essay, stream=True, **long_search))
        assert serving.slots.active == 1
        with pytest.raises(TooManyRequestsError):
            await serving.create_chat_completion(request(**TINY))
        stream.close()

    try:
        asyncio.run(main())
        idle = threading.Event()
        for _ in range(600):
            if serving.slots.active == 0:
                break
            idle.wait(0.05)
        assert serving.slots.active == 0
    finally:
        serving.close()
