"""The service end to end: the official openai SDK against a real uvicorn server on loopback,
running the real engine on the embedded SmolLM2 with the transformers backend."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import openai
import pytest

from llm_tts.config import TTSConfig
from llm_tts.errors import DeadlineExceededError, RunCancelledError
from llm_tts.messages import coerce_messages
from llm_tts.service import ServiceSettings, create_app
from recording_engine import RecordingEngine

MODEL = "SmolLM2-135M-Instruct"
TINY = {"max_tokens": 16, "temperature": 0.0, "seed": 7}
QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer briefly."}]
# A search that would run for minutes if nothing stopped it (an essay: no early end of sequence).
ESSAY = [{"role": "user", "content": "Write a very long, detailed essay on the history of Rome, with many sections."}]
LONG_SEARCH = {
    "tts_strategy": "beam_search",
    "tts_scorer": "entropy",
    "tts_beam_size": 2,
    "tts_candidates_per_step": 2,
    "tts_max_steps": 200,
    "tts_step_max_tokens": 4,
    "tts_step_delimiter": "\n\n\n\n",
    "max_tokens": 4000,
    "temperature": 1.0,
}


@pytest.fixture(scope="module")
def sdk(service_url):
    return openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def recording(serve_app, hf_backend):
    """A server on a RecordingEngine, one run at a time, to observe cancellation and 429."""
    engine = RecordingEngine(hf_backend)
    url = serve_app(create_app(engine, ServiceSettings(max_concurrency=1, retry_after_s=2, queue_size=0)))
    return url, engine


def in_process(tts_engine, messages, **fields):
    return tts_engine.run(coerce_messages(messages), TTSConfig.create(**fields))


def metadata_of(choice) -> dict:
    return choice.model_extra["tts_metadata"] if hasattr(choice, "model_extra") else choice["tts_metadata"]


def test_sdk_plain_request_matches_the_engine_in_process(sdk, tts_engine):
    out = sdk.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=16, temperature=0.0, seed=7, extra_body={"num_paths": 2}
    )
    local = in_process(tts_engine, QUESTION, num_paths=2, **TINY)
    choice = out.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == local.text
    assert choice.finish_reason == local.finish_reason
    md = metadata_of(choice)
    assert md["strategy"] == "self_consistency" and md["scorer"] == "majority_vote"
    assert len(md["candidates"]) == 2
    assert md["consensus_score"] is not None and md["answer_distribution"]
    # usage is the engine's real token count, and the same in both faces
    assert out.usage.model_dump(exclude_none=True) == md["usage"] == local.metadata.usage.model_dump()
    assert out.usage.prompt_tokens == len(tts_engine.backend.render_chat(coerce_messages(QUESTION)))
    assert out.usage.completion_tokens >= len(tts_engine.backend.tokenizer.encode(choice.message.content))
    assert out.model == MODEL and out.object == "chat.completion" and out.id.startswith("chatcmpl-")


def test_extra_body_selects_strategy_and_scorer(sdk):
    out = sdk.chat.completions.create(
        model="smollm2",
        messages=QUESTION,
        max_tokens=16,
        temperature=0.8,
        extra_body={"tts_strategy": "offline_bon", "tts_num_trajectories": 2, "tts_scorer": "perplexity"},
    )
    md = metadata_of(out.choices[0])
    assert (md["strategy"], md["scorer"]) == ("offline_bon", "perplexity")
    assert md["aggregated_score"] is not None
    assert [c["status"] for c in md["candidates"]].count("selected") == 1
    selected = next(c for c in md["candidates"] if c["status"] == "selected")
    assert selected["text"] == out.choices[0].message.content


def test_path_form_sets_strategy_and_scorer(service_url):
    client = openai.OpenAI(base_url=f"{service_url}/v1/offline_bon/entropy", api_key="x", max_retries=0)
    out = client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=12, extra_body={"tts_num_trajectories": 2}
    )
    md = metadata_of(out.choices[0])
    assert (md["strategy"], md["scorer"]) == ("offline_bon", "entropy")
    client = openai.OpenAI(base_url=f"{service_url}/v1/self_consistency", api_key="x", max_retries=0)
    out = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, extra_body={"num_paths": 2})
    assert metadata_of(out.choices[0])["strategy"] == "self_consistency"


def test_streaming_with_the_sdk(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        stream=True,
        max_tokens=24,
        temperature=0.8,
        extra_body={
            "tts_strategy": "beam_search",
            "tts_scorer": "entropy",
            "tts_beam_size": 2,
            "tts_candidates_per_step": 2,
            "tts_max_steps": 3,
            "tts_step_max_tokens": 8,
        },
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    progress = [
        c.choices[0].model_extra["tts_progress"]
        for c in chunks
        if c.choices and "tts_progress" in c.choices[0].model_extra
    ]
    assert progress and all(p["strategy"] == "beam_search" for p in progress)
    assert [p["step"] for p in progress] == sorted(p["step"] for p in progress)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    md = last.choices[0].model_extra["tts_metadata"]
    selected = next(c for c in md["candidates"] if c["status"] == "selected")
    assert content == selected["text"]  # what was streamed is the final answer
    assert last.usage is not None and last.usage.total_tokens == md["usage"]["total_tokens"] > 0
    assert len({c.id for c in chunks}) == 1


def test_raw_sse_format(service_url):
    body = {"model": MODEL, "messages": QUESTION, "stream": True, "num_paths": 2, **TINY}
    with httpx.stream("POST", f"{service_url}/v1/chat/completions", json=body, timeout=300) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert "tts_metadata" in payloads[-1]["choices"][0] and "usage" in payloads[-1]


def test_async_client_concurrent_requests_get_their_own_answers(service_url, tts_engine):
    questions = ["What is 2 + 3?", "What is 10 - 4?", "Name a primary color.", "What is 3 * 3?"]

    async def ask(client, q):
        out = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}], extra_body={"num_paths": 2}, **TINY
        )
        return out.choices[0].message.content

    async def main():
        async with openai.AsyncOpenAI(base_url=f"{service_url}/v1", api_key="x", max_retries=0, timeout=300) as client:
            return await asyncio.gather(*(ask(client, q) for q in questions))

    answers = asyncio.run(main())
    expected = [in_process(tts_engine, [{"role": "user", "content": q}], num_paths=2, **TINY).text for q in questions]
    assert answers == expected


def test_event_loop_serves_while_a_search_runs(recording):
    url, engine = recording
    body = {"messages": ESSAY, "stream": True, **LONG_SEARCH}
    with (
        httpx.Client(base_url=url, timeout=120) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # the run has started
        health = client.get("/health").json()  # answered while the search is running
        assert health["active_requests"] == 1 and health["max_concurrency"] == 1
        busy = client.post("/v1/chat/completions", json={"messages": QUESTION, **TINY})
        assert busy.status_code == 429
        assert busy.headers["Retry-After"] == "2"
        assert busy.json()["error"]["code"] == "rate_limit_exceeded"
        # leaving the block closed the connection mid-search: the run must stop
    ended = engine.ended.get(timeout=120)
    assert isinstance(ended, RunCancelledError), ended
    wait_until_idle(url)


def test_disconnect_cancels_a_non_streaming_run(recording):
    url, engine = recording
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{url}/v1/chat/completions", json={"messages": ESSAY, **LONG_SEARCH}, timeout=httpx.Timeout(60, read=3)
        )
    ended = engine.ended.get(timeout=120)
    assert isinstance(ended, RunCancelledError), ended
    wait_until_idle(url)


def test_deadline_ends_a_runaway_search(recording):
    url, engine = recording
    r = httpx.post(
        f"{url}/v1/chat/completions", json={"messages": ESSAY, **LONG_SEARCH, "tts_deadline": 1.5}, timeout=120
    )
    assert r.status_code == 408, r.text
    error = r.json()["error"]
    assert error["code"] == "deadline_exceeded" and "deadline" in error["message"]
    assert isinstance(engine.ended.get(timeout=120), DeadlineExceededError)
    wait_until_idle(url)


def test_deadline_while_streaming_is_an_error_event_the_sdk_raises(recording):
    url, engine = recording
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model=MODEL, messages=ESSAY, stream=True, extra_body={**LONG_SEARCH, "tts_deadline": 1.5}
    )
    with pytest.raises(openai.APIError, match="deadline"):
        list(stream)
    assert isinstance(engine.ended.get(timeout=120), DeadlineExceededError)
    wait_until_idle(url)


def wait_until_idle(url: str) -> None:
    """The slot of an ended run is released by its worker thread right after the run returns."""
    done = threading.Event()
    for _ in range(600):
        if httpx.get(f"{url}/health").json()["active_requests"] == 0:
            return
        done.wait(0.05)
    raise AssertionError("the run's slot was never released")


def test_models_health_and_docs(service_url):
    with httpx.Client(base_url=service_url, timeout=30) as c:
        models = c.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == [MODEL]
        health = c.get("/health").json()
        assert (health["status"], health["model"], health["backend"]) == ("ok", MODEL, "transformers")
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
    props = spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for name in TTSConfig.model_fields:
        assert props[name].get("description"), f"{name} is not documented in /docs"
    for path in ("/v1/chat/completions", "/v1/{strategy}/chat/completions", "/v1/{strategy}/{scorer}/chat/completions"):
        assert "post" in spec["paths"][path]
