"""The OpenAI-compatible backend against a small fake API server on loopback that misbehaves on cue.

No real provider can be made to return 429s, 500s, slow answers or dropped connections on
demand, so these tests use a scripted fake (a real HTTP server on 127.0.0.1, named "fake" in
every test): retries, Retry-After, timeouts, the concurrency limit, n and capability probing,
credentials, and the error a user sees.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.openai_backend import OpenAIBackend
from llm_tts.backends.usage import metered
from llm_tts.config import TTSConfig
from llm_tts.errors import (
    CapabilityError,
    InvalidParameterError,
    ModelNotFoundError,
    RemoteAPIError,
    RemoteTimeoutError,
    UnknownNameError,
)
from llm_tts.messages import ChatMessage

pytestmark = pytest.mark.timeout(120)

ANSWER_PIECES = ["The", " answer", " is", " \\boxed{4}", "."]
QUESTION = [ChatMessage(role="user", content="What is 2 + 2?")]
FAST = dict(initial_backoff=0.01, max_backoff=0.05)  # keep retry waits short in tests


class FakeAPI:
    """Scripted OpenAI-shaped server. ``script`` holds what the next chat requests get:
    ("status", code, headers), ("sleep", seconds), ("drop",); when empty, a normal answer."""

    def __init__(self, *, honour_n: bool = False, logprobs: bool = False, delay: float = 0.0) -> None:
        self.honour_n, self.logprobs, self.delay = honour_n, logprobs, delay
        self.script: list[tuple] = []
        self.message_extra: dict = {}  # extra fields of each answer's message (a reasoning server's thinking)
        self.requests: list[tuple[str, dict[str, str], dict]] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake.requests.append((self.path, dict(self.headers), {}))
                if self.path == "/v1/models":
                    return self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append((self.path, dict(self.headers), body))
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                with fake.lock:
                    action = fake.script.pop(0) if fake.script else None
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                try:
                    if action and action[0] == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if action and action[0] == "sleep":
                        time.sleep(action[1])
                    if action and action[0] == "status":
                        code, headers = action[1], action[2] if len(action) > 2 else {}
                        message = action[3] if len(action) > 3 else f"scripted {code}"
                        return self._json(code, {"error": {"message": message, "type": "fake"}}, headers)
                    if body.get("logprobs") and not fake.logprobs:
                        return self._json(400, {"error": {"message": "logprobs is not supported by this model"}})
                    time.sleep(fake.delay)
                    self._json(200, fake.completion(body))
                finally:
                    with fake.lock:
                        fake.inflight -= 1

            def _json(self, code: int, data: dict, headers: dict | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def completion(self, body: dict) -> dict:
        n = body.get("n", 1) if self.honour_n else 1
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(ANSWER_PIECES), **self.message_extra},
            "finish_reason": "stop",
        }
        if body.get("logprobs"):
            k = body.get("top_logprobs", 0)
            choice["logprobs"] = {
                "content": [
                    {
                        "token": p,
                        "logprob": -0.1 * (i + 1),
                        "bytes": list(p.encode()),
                        "top_logprobs": [
                            {"token": p, "logprob": -0.1 * (i + 1), "bytes": list(p.encode())},
                            {"token": "x", "logprob": -3.0, "bytes": [120]},
                        ][:k],
                    }
                    for i, p in enumerate(ANSWER_PIECES)
                ]
            }
        return {
            "id": "fake",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{**choice, "index": i} for i in range(n)],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7 * n, "total_tokens": 11 + 7 * n},
        }

    def chat_requests(self) -> list[dict]:
        return [b for p, _, b in self.requests if p == "/v1/chat/completions"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeAPI()
    yield server
    server.close()


def backend_for(fake: FakeAPI, **options) -> OpenAIBackend:
    options.setdefault("provider", "openai")
    options.setdefault("api_key", "sk-test")
    backend = OpenAIBackend(base_url=fake.url, **{**FAST, **options})
    backend.capabilities  # probe now, so each test scripts only the requests it is about
    return backend


def one_sample(backend: OpenAIBackend, **params):
    return backend.generate([backend.render_chat(QUESTION)], SamplingParams(n=1, max_tokens=16, **params))[0][0]


def test_fake_429_with_retry_after_is_retried_then_succeeds(fake):
    backend = backend_for(fake, max_retries=3)
    before = len(fake.chat_requests())
    fake.script = [("status", 429, {"Retry-After": "0.2"}), ("status", 429, {"Retry-After": "0"})]
    seg = one_sample(backend)
    assert seg.text == "".join(ANSWER_PIECES)
    assert len(fake.chat_requests()) - before == 3


def test_fake_retry_after_longer_than_allowed_fails_at_once(fake):
    backend = backend_for(fake, max_retries=3, max_retry_after=5)
    before = len(fake.chat_requests())
    fake.script = [("status", 429, {"Retry-After": "120"})]
    with pytest.raises(RemoteAPIError, match=r"HTTP 429 .*retry after 120s, more than max_retry_after=5s") as info:
        one_sample(backend)
    assert info.value.status == 429
    assert len(fake.chat_requests()) - before == 1


def test_fake_500s_exhaust_retries_with_a_clear_error(fake):
    backend = backend_for(fake, max_retries=2)
    before = len(fake.chat_requests())
    fake.script = [("status", 500, {}, "upstream exploded")] * 5
    with pytest.raises(
        RemoteAPIError, match=r"HTTP 500 after 3 attempt\(s\) \(retries exhausted\): upstream exploded"
    ) as info:
        one_sample(backend)
    assert info.value.status == 500 and info.value.http_status == 502
    assert len(fake.chat_requests()) - before == 3


def test_fake_slow_response_times_out_after_retries(fake):
    backend = backend_for(fake, timeout=0.3, max_retries=1)
    fake.script = [("sleep", 2.0), ("sleep", 2.0)]
    with pytest.raises(
        RemoteTimeoutError, match=r"timed out .*timeout=0.3s.* after 2 attempt\(s\); raise the backend's timeout="
    ):
        one_sample(backend)


def test_fake_one_slow_answer_then_a_fast_one_succeeds(fake):
    backend = backend_for(fake, timeout=0.3, max_retries=2)
    fake.script = [("sleep", 2.0)]
    assert one_sample(backend).text == "".join(ANSWER_PIECES)


def test_fake_dropped_connection_is_retried(fake):
    backend = backend_for(fake, max_retries=2)
    before = len(fake.chat_requests())
    fake.script = [("drop",)]
    assert one_sample(backend).text == "".join(ANSWER_PIECES)
    assert len(fake.chat_requests()) - before == 2


def test_fake_connections_always_dropped_give_a_transport_error(fake):
    backend = backend_for(fake, max_retries=1)
    fake.script = [("drop",)] * 3
    with pytest.raises(RemoteAPIError, match=r"failed after 2 attempt\(s\): RemoteProtocolError") as info:
        one_sample(backend)
    assert info.value.status is None


def test_fake_nothing_listening_says_check_the_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    backend = OpenAIBackend(
        base_url=f"http://127.0.0.1:{port}/v1", provider="openai", api_key="k", max_retries=1, **FAST
    )
    with pytest.raises(RemoteAPIError, match="ConnectError.*is the server running and the base_url right"):
        backend.capabilities


def test_fake_rejected_key_is_not_retried_nor_echoed(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    fake.script = [("status", 401, {}, "Incorrect API key provided: sk-secret-123")]
    backend = OpenAIBackend(base_url=fake.url, provider="openai", **FAST)
    assert "sk-secret-123" not in repr(backend) and "sk-secret-123" not in repr(backend.http)
    with pytest.raises(RemoteAPIError) as info:
        backend.capabilities
    message = str(info.value)
    assert "HTTP 401" in message and "set OPENAI_API_KEY or pass api_key=" in message
    assert "sk-secret-123" not in message and "Incorrect API key provided: ***" in message
    assert len(fake.chat_requests()) == 1  # the probe's first request got the 401: not retried
    assert {h["Authorization"] for _, h, _ in fake.requests} == {"Bearer sk-secret-123"}


def test_fake_openrouter_key_comes_from_its_own_variable(fake, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "or-key-1")
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-one")
    backend = OpenAIBackend("fake-model", provider="openrouter", base_url=fake.url, **FAST)
    one_sample(backend)
    assert {h["Authorization"] for _, h, _ in fake.requests} == {"Bearer or-key-1"}
    assert all("max_tokens" in b for b in fake.chat_requests())  # OpenRouter's field name


def test_fake_server_ignoring_n_gets_n_parallel_requests_within_the_limit():
    fake = FakeAPI(delay=0.3)
    try:
        backend = backend_for(fake, max_concurrency=3)
        assert backend.probe.n is False  # the probe asked n=2 and got one choice
        before = len(fake.chat_requests())
        fake.max_inflight = 0
        with metered() as usage:
            (row,) = backend.generate([backend.render_chat(QUESTION)], SamplingParams(n=8, seed=5, max_tokens=16))
        assert len(row) == 8 and all(s.text == "".join(ANSWER_PIECES) for s in row)
        sent = fake.chat_requests()[before:]
        assert len(sent) == 8 and all(b["n"] == 1 for b in sent)
        assert sorted(b["seed"] for b in sent) == list(range(5, 13))  # differing seeds: not clones
        assert 2 <= fake.max_inflight <= 3
        assert usage.requests == 8 and usage.completion_tokens == 56 and [len(s) for s in row] == [7] * 8
        backend.generate([backend.render_chat(QUESTION)], SamplingParams(n=2, max_tokens=4))
        assert sum(p == "/v1/models" for p, _, _ in fake.requests) == 1  # probed once, remembered
    finally:
        fake.close()


def test_fake_endpoint_without_logprobs_refuses_logprob_scorers_clearly(fake):
    from llm_tts.engine import TTSEngine

    backend = backend_for(fake)
    assert backend.capabilities.logprobs is False and backend.capabilities.max_top_logprobs == 0
    seg = one_sample(backend)
    assert seg.logprobs is None and len(seg) == 7  # the API's own completion_tokens
    assert backend.decode(seg.token_ids) == seg.text
    with pytest.raises(CapabilityError, match="top_logprobs=3 was asked, but .* returns no top logprobs"):
        one_sample(backend, top_logprobs=3)
    engine = TTSEngine(backend)
    with pytest.raises(CapabilityError, match="entropy.*logprobs"):
        engine.run(QUESTION, TTSConfig.create(tts_strategy="offline_bon", tts_scorer="entropy", tts_num_trajectories=2))
    result = engine.run(QUESTION, TTSConfig.create(tts_strategy="self_consistency", num_paths=3, max_tokens=16))
    assert result.metadata.selected_answer == "4" and result.metadata.consensus_score == 1.0


def test_fake_endpoint_honouring_n_with_logprobs_uses_one_request():
    fake = FakeAPI(honour_n=True, logprobs=True)
    try:
        backend = backend_for(fake)
        caps = backend.capabilities
        assert backend.probe.n and caps.logprobs and caps.max_top_logprobs == 20
        before = len(fake.chat_requests())
        (row,) = backend.generate([backend.render_chat(QUESTION)], SamplingParams(n=4, max_tokens=16, top_logprobs=2))
        assert len(fake.chat_requests()) - before == 1 and len(row) == 4
        seg = row[0]
        assert backend.token_texts(seg.token_ids) == ANSWER_PIECES
        assert seg.logprobs == pytest.approx((-0.1, -0.2, -0.3, -0.4, -0.5))
        assert next(sorted(t.values(), reverse=True) for t in seg.top_logprobs) == pytest.approx([-0.1, -3.0])
        with pytest.raises(CapabilityError, match="continuation"):
            backend.generate([list(backend.render_chat(QUESTION)) + list(seg.token_ids)], SamplingParams(max_tokens=4))
    finally:
        fake.close()


def test_fake_chat_only_api_cannot_continue_a_trailing_assistant_message(fake):
    backend = backend_for(fake)
    with pytest.raises(CapabilityError, match="continuation: a chat-only API .* trailing assistant message"):
        backend.render_chat([*QUESTION, ChatMessage(role="assistant", content="Let me think.")])


def test_fake_model_not_served_names_what_is(fake):
    backend = OpenAIBackend("gpt-nope", base_url=fake.url, provider="openai", api_key="k", **FAST)
    with pytest.raises(ModelNotFoundError, match="'gpt-nope' is not served at .*it serves: fake-model"):
        backend.model_name


def test_bad_options_are_typed_errors_naming_the_value():
    with pytest.raises(InvalidParameterError, match="max_concurrency=0"):
        OpenAIBackend(base_url="http://127.0.0.1:9/v1", max_concurrency=0)
    with pytest.raises(InvalidParameterError, match="timeout=-1"):
        OpenAIBackend(base_url="http://127.0.0.1:9/v1", timeout=-1)
    with pytest.raises(UnknownNameError, match="unknown provider 'bedrock'; valid: openai, openrouter, vllm"):
        OpenAIBackend(provider="bedrock")


def test_create_backend_by_name_with_provider_defaults(monkeypatch):
    from llm_tts.backends import create_backend

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    backend = create_backend("openai", "openai/gpt-4o-mini", provider="openrouter")
    assert backend.base_url == "https://openrouter.ai/api/v1" and backend.api_key_env == "OPENROUTER_API_KEY"
    backend.close()  # nothing was sent: setup is lazy


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])  # vLLM's / SGLang's, DeepSeek's
def test_fake_reasoning_server_thinking_is_read_apart_from_the_answer(fake, field):
    from llm_tts.engine import TTSEngine

    fake.message_extra = {field: "Two and two, with a decoy \\boxed{5}."}
    engine = TTSEngine(backend_for(fake))
    result = engine.run(
        QUESTION, engine.plan(QUESTION, {"num_paths": 1, "chat_template_kwargs": {"thinking": True}}).config
    )
    assert result.reasoning == "Two and two, with a decoy \\boxed{5}."
    assert result.text == "".join(ANSWER_PIECES)
    assert result.metadata.selected_answer == "4"  # the boxed decoy in the thinking is not the answer
    assert fake.chat_requests()[-1]["chat_template_kwargs"] == {"thinking": True}  # sent on, vLLM's name
