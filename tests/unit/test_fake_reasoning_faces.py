"""Both faces return a reasoning model's thinking apart from its answer (FAKE scripted backend:
it writes <think> ... </think>; the service, the official openai SDK and ChatTTS are real)."""

from __future__ import annotations

import openai
import pytest

from fakes import FakeScriptedBackend
from llm_tts.engine import TTSEngine
from llm_tts.integrations import ChatTTS
from llm_tts.service import ServiceSettings, create_app

COMPLETION = "<think>Two plus three.</think>The answer is 5."
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]
THINKING_TOKENS = len("<think>Two plus three.</think>")  # the fake's tokens are characters


@pytest.fixture(scope="module")
def fake_reasoning_engine():
    return TTSEngine(FakeScriptedBackend({"": [COMPLETION] * 8}))


@pytest.fixture(scope="module")
def fake_reasoning_url(serve_app, fake_reasoning_engine):
    return serve_app(create_app(fake_reasoning_engine, ServiceSettings()))


def test_fake_reasoning_the_openai_sdk_reads_reasoning_beside_content(fake_reasoning_url):
    client = openai.OpenAI(base_url=f"{fake_reasoning_url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(messages=QUESTION, model="fake-scripted-model", extra_body={"num_paths": 2})
    message = reply.choices[0].message
    assert message.content == "The answer is 5."
    assert message.reasoning == message.reasoning_content == "Two plus three."  # type: ignore[attr-defined]
    assert reply.usage.completion_tokens_details.reasoning_tokens == 2 * THINKING_TOKENS


def test_fake_reasoning_a_stream_sends_the_thinking_before_the_answer(fake_reasoning_url):
    client = openai.OpenAI(base_url=f"{fake_reasoning_url}/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            messages=QUESTION, model="fake-scripted-model", stream=True, extra_body={"num_paths": 2}
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = [i for i, d in enumerate(deltas) if getattr(d, "reasoning", None)]
    answer = [i for i, d in enumerate(deltas) if d.content]
    assert [deltas[i].reasoning for i in thinking] == ["Two plus three."]  # type: ignore[attr-defined]
    assert "".join(deltas[i].content or "" for i in answer) == "The answer is 5."
    assert thinking[0] < answer[0]


@pytest.mark.parametrize("mode", ["in_process", "http"])
def test_fake_reasoning_chat_tts_returns_the_standard_reasoning_block(mode, fake_reasoning_engine, fake_reasoning_url):
    llm = (
        ChatTTS(engine=fake_reasoning_engine, num_paths=2)
        if mode == "in_process"
        else ChatTTS(base_url=f"{fake_reasoning_url}/v1", model="fake-scripted-model", num_paths=2)
    )
    message = llm.invoke("What is 2 + 3?")
    assert message.content == "The answer is 5."
    assert message.additional_kwargs["reasoning_content"] == "Two plus three."
    assert [b["type"] for b in message.content_blocks] == ["reasoning", "text"]
    assert message.content_blocks[0]["reasoning"] == "Two plus three."
    assert message.usage_metadata["output_token_details"]["reasoning"] == 2 * THINKING_TOKENS

    chunks = list(llm.stream("What is 2 + 3?"))
    thinking = [i for i, c in enumerate(chunks) if c.additional_kwargs.get("reasoning_content")]
    answer = [i for i, c in enumerate(chunks) if c.content]
    assert len(thinking) == 1 and thinking[0] < answer[0]
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.content == "The answer is 5."
    assert merged.additional_kwargs["reasoning_content"] == "Two plus three."

    batch = llm.batch(["What is 2 + 3?"])
    assert batch[0].additional_kwargs["reasoning_content"] == "Two plus three."


def test_fake_reasoning_the_openai_backend_over_our_service_keeps_the_thinking_apart(fake_reasoning_url):
    from llm_tts.backends.openai_backend import OpenAIBackend
    from llm_tts.messages import coerce_messages

    backend = OpenAIBackend(base_url=f"{fake_reasoning_url}/v1", extra_body={"num_paths": 1})
    engine = TTSEngine(backend)
    try:
        result = engine.run(coerce_messages(QUESTION), engine.plan(QUESTION, {"num_paths": 2}).config)
    finally:
        engine.close()
    assert (result.reasoning, result.text) == ("Two plus three.", "The answer is 5.")
    assert result.metadata.selected_answer == "5"


@pytest.mark.parametrize(
    ("field", "value"), [("tts_thinking_budget", -1), ("reasoning_parser", "no_such_family"), ("reasoning_end", "")]
)
def test_fake_reasoning_bad_settings_are_an_openai_shaped_400(fake_reasoning_url, field, value):
    import httpx

    body = {"model": "fake-scripted-model", "messages": QUESTION, field: value}
    response = httpx.post(f"{fake_reasoning_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
