"""ChatTTS over HTTP against a real llm-tts service on 127.0.0.1: the same message shape and
metadata keys as in-process, streaming, async, typed errors, auth, retries and timeouts."""

from __future__ import annotations

import socket

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from llm_tts.errors import (
    BackendUnavailableError,
    DeadlineExceededError,
    InvalidParameterError,
    LLMTTSError,
    ModelNotFoundError,
    UnknownNameError,
)
from llm_tts.integrations import ChatTTS
from llm_tts.metadata import TTSMetadata
from llm_tts.service import ServiceSettings, create_app

SMALL = {"num_paths": 2, "max_tokens": 12}
Q = "What is 2 + 3?"
SERVER_KEY = "server-key-for-chat-tts"


@pytest.fixture(scope="module")
def http_llm(service_url) -> ChatTTS:
    llm = ChatTTS(base_url=f"{service_url}/v1", **SMALL)
    yield llm
    llm.close()


def test_http_invoke_has_the_same_shape_as_in_process(http_llm, tts_engine):
    remote = http_llm.invoke([SystemMessage("Answer briefly."), HumanMessage(Q)])
    local = ChatTTS(engine=tts_engine, **SMALL).invoke([SystemMessage("Answer briefly."), HumanMessage(Q)])
    for msg in (remote, local):
        assert isinstance(msg, AIMessage) and msg.content
        assert set(msg.response_metadata) >= {"tts_metadata", "model_name", "finish_reason"}
        assert set(msg.response_metadata["tts_metadata"]) == set(TTSMetadata.model_fields)
        assert set(msg.usage_metadata) >= {"input_tokens", "output_tokens", "total_tokens"}
    assert set(remote.response_metadata) == set(local.response_metadata)
    assert remote.usage_metadata["input_tokens"] == local.usage_metadata["input_tokens"]  # same prompt, same tokens
    md = remote.response_metadata["tts_metadata"]
    assert remote.response_metadata["model_name"] == md["model"] == "SmolLM2-135M-Instruct"
    assert len(md["candidates"]) == 2
    assert remote.usage_metadata["output_tokens"] == md["usage"]["completion_tokens"]


def test_http_per_call_overrides_reach_the_service(http_llm):
    md = http_llm.invoke(Q, tts_budget=3).response_metadata["tts_metadata"]
    assert md["strategy"] == "self_consistency" and len(md["candidates"]) == 3
    md = http_llm.bind(tts_strategy="offline_bon", tts_num_trajectories=2, tts_scorer="sequence_prob").invoke(Q)
    assert md.response_metadata["tts_metadata"]["scorer"] == "sequence_prob"


def test_http_stream_yields_progress_then_answer_then_metadata(http_llm):
    chunks = list(http_llm.stream(Q))
    progress = [c for c in chunks if "tts_progress" in c.response_metadata]
    assert progress and all(c.content == "" for c in progress)
    text = "".join(c.content for c in chunks)
    last = chunks[-1]
    assert last.chunk_position == "last"
    md = last.response_metadata["tts_metadata"]
    assert text == next(c["text"] for c in md["candidates"] if c["status"] == "selected")
    assert last.usage_metadata["total_tokens"] == md["usage"]["total_tokens"]


async def test_http_async_invoke_batch_and_stream(http_llm):
    msg = await http_llm.ainvoke(Q)
    assert msg.content and msg.response_metadata["tts_metadata"]["strategy"] == "self_consistency"
    results = await http_llm.abatch([Q, "What is 1 + 1?"])
    assert len(results) == 2 and all(r.content for r in results)
    chunks = [c async for c in http_llm.astream(Q)]
    assert any("tts_progress" in c.response_metadata for c in chunks)
    assert chunks[-1].chunk_position == "last" and "tts_metadata" in chunks[-1].response_metadata


def test_http_errors_from_the_service_are_the_same_typed_errors(http_llm):
    with pytest.raises(UnknownNameError) as e:
        http_llm.invoke(Q, tts_strategy="no_such_strategy")
    assert e.value.param == "tts_strategy" and "no_such_strategy" in str(e.value)
    with pytest.raises(ModelNotFoundError) as e:
        http_llm.invoke(Q, model="not-a-served-model")
    assert e.value.http_status == 404
    with pytest.raises(UnknownNameError):  # also when streaming: the error arrives before any chunk
        list(http_llm.stream(Q, tts_scorer="no_such_scorer", tts_strategy="offline_bon"))
    with pytest.raises(InvalidParameterError, match="tts_beam_size"):  # checked here, never sent
        http_llm.invoke(Q, tts_beam_size=999)


def test_http_api_key_is_sent_as_bearer_and_required(serve_app, tts_engine):
    url = serve_app(create_app(tts_engine, ServiceSettings(api_key=SERVER_KEY))) + "/v1"
    with pytest.raises(LLMTTSError) as e:
        ChatTTS(base_url=url, api_key="wrong-key", **SMALL).invoke(Q)
    assert e.value.http_status == 401 and "wrong-key" not in str(e.value)
    assert ChatTTS(base_url=url, api_key=SERVER_KEY, **SMALL).invoke(Q).content


def test_http_connection_refused_is_a_typed_error_after_retries():
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = ChatTTS(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(BackendUnavailableError) as e:
        llm.invoke(Q)
    assert f"127.0.0.1:{port}" in str(e.value) and "2 attempt" in str(e.value)


def test_http_timeout_is_a_deadline_error(service_url):
    llm = ChatTTS(base_url=f"{service_url}/v1", timeout=0.05, max_retries=0, num_paths=2, max_tokens=64)
    with pytest.raises(DeadlineExceededError):
        llm.invoke(Q)


class _FlakyProxy:
    """A fault-injecting proxy (a fake: no real service misbehaves on demand): the first
    ``failures`` requests get ``status`` with Retry-After, the rest go to the real service."""

    def __init__(self, target: str, failures: int, status: int) -> None:
        self.target, self.failures, self.status, self.seen = target, failures, status, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen += 1
        if self.seen <= self.failures:
            error = b'{"error": {"message": "busy", "type": "rate_limit_error", "param": null, "code": "busy"}}'
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"0")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": error})
            return
        async with httpx.AsyncClient(timeout=300) as client:
            upstream = await client.post(
                self.target + scope["path"], content=body, headers={"content-type": "application/json"}
            )
        headers = [(b"content-type", upstream.headers["content-type"].encode())]
        await send({"type": "http.response.start", "status": upstream.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": upstream.content})


@pytest.mark.parametrize("status", [429, 503])
def test_fake_flaky_proxy_retries_429_and_5xx_honouring_retry_after(serve_app, service_url, status):
    proxy = _FlakyProxy(service_url, failures=2, status=status)
    url = serve_app(proxy) + "/v1"
    msg = ChatTTS(base_url=url, max_retries=2, **SMALL).invoke(Q)
    assert msg.content and proxy.seen == 3
    proxy.seen = 0
    with pytest.raises(LLMTTSError) as e:  # no retries left: the service's status, typed
        ChatTTS(base_url=url, max_retries=1, **SMALL).invoke(Q)
    assert e.value.http_status == status and "busy" in str(e.value) and proxy.seen == 2
