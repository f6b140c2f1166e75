"""Service error paths on a real uvicorn server: every client mistake is an OpenAI-shaped 4xx
naming the field, auth, size and budget limits, and the server keeps serving afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from llm_tts.service import ServiceSettings, create_app

UPSTREAM_SECRET = "sk-upstream-provider-secret-0123456789"
SERVER_KEY = "server-key-abc123"
GOOD = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 4, "num_paths": 1, "temperature": 0}


@pytest.fixture(scope="module")
def strict_url(serve_app, tts_engine):
    """A server with tight limits, so limit errors are cheap to provoke."""
    settings = ServiceSettings(max_budget=4, max_tokens=16, max_body_bytes=4096, max_concurrency=2)
    return serve_app(create_app(tts_engine, settings))


@pytest.fixture(scope="module")
def auth_url(serve_app, tts_engine):
    return serve_app(create_app(tts_engine, ServiceSettings(api_key=SERVER_KEY)))


@pytest.fixture(scope="module")
def client(strict_url):
    with httpx.Client(base_url=strict_url, timeout=120, headers={"Authorization": f"Bearer {UPSTREAM_SECRET}"}) as c:
        yield c


def assert_error(response: httpx.Response, status: int, param: str | None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if error["code"] == "unknown_name":
        assert "valid:" in error["message"], error  # lists what is accepted
    elif param is not None:
        assert param.split("[")[0].split(".")[0] in error["message"], error
    assert UPSTREAM_SECRET not in response.text  # a client's provider key is never echoed
    return error


SELECTOR_FILE = Path(__file__).resolve().parents[1] / "data" / "selector.json"


def msgs(**extra):
    return {**GOOD, **extra}


BAD_BODIES = [
    pytest.param({"max_tokens": 4}, "messages", "invalid_parameter", id="missing-messages"),
    pytest.param(msgs(messages=[]), "messages", "invalid_parameter", id="empty-messages"),
    pytest.param(msgs(messages="hi"), "messages", "invalid_parameter", id="messages-not-a-list"),
    pytest.param(
        msgs(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "invalid_parameter", id="unknown-role"
    ),
    pytest.param(msgs(messages=[{"content": "x"}]), "messages[0].role", "invalid_parameter", id="missing-role"),
    pytest.param(
        msgs(messages=[{"role": "user", "content": 5}]), "messages[0].content", "invalid_parameter", id="content-int"
    ),
    pytest.param(
        msgs(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "messages[0].content",
        "invalid_parameter",
        id="image-content",
    ),
    pytest.param(msgs(num_paths=0), "num_paths", "invalid_parameter", id="num-paths-zero"),
    pytest.param(msgs(num_paths=65), "num_paths", "invalid_parameter", id="num-paths-over-cap"),
    pytest.param(msgs(num_paths="three"), "num_paths", "invalid_parameter", id="num-paths-wrong-type"),
    pytest.param(msgs(temperature="hot"), "temperature", "invalid_parameter", id="temperature-wrong-type"),
    pytest.param(msgs(temperature=2.5), "temperature", "invalid_parameter", id="temperature-range"),
    pytest.param(msgs(top_p=0), "top_p", "invalid_parameter", id="top-p-zero"),
    pytest.param(msgs(max_tokens=0), "max_tokens", "invalid_parameter", id="max-tokens-zero"),
    pytest.param(msgs(max_tokens=10**9), "max_tokens", "invalid_parameter", id="max-tokens-huge"),
    pytest.param(msgs(tts_beam_size=17), "tts_beam_size", "invalid_parameter", id="beam-size-range"),
    pytest.param(msgs(tts_score_aggregation="median"), "tts_score_aggregation", "invalid_parameter", id="aggregation"),
    pytest.param(msgs(tts_window_size=0), "tts_window_size", "invalid_parameter", id="window-size"),
    pytest.param(msgs(stream="yes please"), "stream", "invalid_parameter", id="stream-wrong-type"),
    pytest.param(msgs(stop=[1, 2]), "stop", "invalid_parameter", id="stop-wrong-type"),
    pytest.param(msgs(n=2), "n", "invalid_parameter", id="n-above-one"),
    pytest.param(msgs(tts_deadline=0), "tts_deadline", "invalid_parameter", id="deadline-zero"),
    pytest.param(msgs(frequency_penalti=0.5), "frequency_penalti", "unknown_name", id="unknown-field"),
    pytest.param(msgs(tts_beamsize=2), "tts_beamsize", "unknown_name", id="typo-tts-field"),
    pytest.param(msgs(tts_strategy="monte_carlo"), "tts_strategy", "unknown_name", id="unknown-strategy"),
    pytest.param(msgs(tts_scorer="vibes"), "tts_scorer", "unknown_name", id="unknown-scorer"),
    pytest.param(msgs(provider="vllm"), "provider", "invalid_parameter", id="other-provider"),
    pytest.param(
        msgs(tts_selector="/no/such/selector.json"), "tts_selector", "invalid_parameter", id="selector-missing"
    ),
    pytest.param(msgs(tts_selector=__file__), "tts_selector", "invalid_parameter", id="selector-not-json"),
    # Server limits (max_budget=4, max_tokens=16 on this server).
    pytest.param(msgs(num_paths=5), "num_paths", "invalid_parameter", id="over-server-budget"),
    pytest.param(msgs(tts_budget=9), "tts_budget", "invalid_parameter", id="tts-budget-over-server-budget"),
    pytest.param(msgs(max_tokens=17), "max_tokens", "invalid_parameter", id="over-server-max-tokens"),
    pytest.param(
        {"messages": GOOD["messages"], "max_completion_tokens": 17},
        "max_tokens",
        "invalid_parameter",
        id="over-server-max-completion-tokens",
    ),
]


@pytest.mark.parametrize("body, param, code", BAD_BODIES)
def test_bad_body_is_a_400_naming_the_field(client, body, param, code):
    assert_error(client.post("/v1/chat/completions", json=body), 400, param, code)


@pytest.mark.parametrize("body, param, code", BAD_BODIES[:8])
def test_bad_body_is_a_400_when_streaming_too(client, body, param, code):
    assert_error(client.post("/v1/chat/completions", json={**body, "stream": True}), 400, param, code)


def test_a_selector_path_is_refused_alike_whether_the_file_exists_or_not_and_a_builtin_runs(client):
    # A client may name only builtins and the files of the server's --selector-dir (none here): a
    # path gets the same answer whether a selector file is there or not, so it probes nothing.
    there = str(SELECTOR_FILE)
    missing = there.replace("selector.json", "no-such-selector.json")
    errors = [
        assert_error(client.post("/v1/chat/completions", json=msgs(tts_selector=p)), 400, "tts_selector")
        for p in (there, missing)
    ]
    assert errors[0]["message"].replace(there, "X") == errors[1]["message"].replace(missing, "X")
    body = {"messages": GOOD["messages"], "tts_strategy": "offline_bon", "tts_scorer": "self_certainty"}
    body |= {"tts_budget": 2, "max_tokens": 8}
    r = client.post("/v1/chat/completions", json={**body, "tts_selector": "builtin:smollm2-arith"})
    assert r.status_code == 200, r.text


def test_malformed_json(client):
    r = client.post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    error = assert_error(r, 400, None, "invalid_json")
    assert "not valid JSON" in error["message"]


def test_body_that_is_not_an_object(client):
    error = assert_error(client.post("/v1/chat/completions", json=[1, 2]), 400, "body", "invalid_parameter")
    assert "JSON object" in error["message"]


def test_form_body_says_to_send_json(client):
    r = client.post("/v1/chat/completions", content=json.dumps(GOOD), headers={"Content-Type": "text/plain"})
    error = assert_error(r, 400, "body")
    assert "Content-Type: application/json" in error["message"]


def test_unknown_strategy_and_scorer_in_path(client):
    assert_error(client.post("/v1/monte_carlo/chat/completions", json=GOOD), 400, "tts_strategy", "unknown_name")
    error = assert_error(
        client.post("/v1/offline_bon/vibes/chat/completions", json=GOOD), 400, "tts_scorer", "unknown_name"
    )
    assert "entropy" in error["message"]  # lists the valid scorers


def test_path_and_body_that_disagree(client):
    body = msgs(tts_strategy="beam_search")
    assert_error(
        client.post("/v1/self_consistency/chat/completions", json=body), 400, "tts_strategy", "invalid_parameter"
    )


def test_unknown_model_is_404(client):
    error = assert_error(client.post("/v1/chat/completions", json=msgs(model="openai/gpt-4o-mini")), 404, "model")
    assert "SmolLM2-135M-Instruct" in error["message"]


def test_body_over_the_size_limit_is_413(client):
    big = msgs(messages=[{"role": "user", "content": "x" * 5000}])
    assert_error(client.post("/v1/chat/completions", json=big), 413, None, "request_too_large")


def test_chunked_body_over_the_size_limit_is_413(client):
    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    r = client.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, None, "request_too_large")


def test_unknown_route_and_wrong_method(client):
    assert_error(client.post("/v1/embeddings", json=GOOD), 404, None, "not_found")
    assert_error(client.get("/v1/chat/completions"), 405, None, "method_not_allowed")


def test_the_server_keeps_serving_after_bad_input(client):
    for _ in range(3):
        client.post("/v1/chat/completions", content=b"{{{", headers={"Content-Type": "application/json"})
    r = client.post("/v1/chat/completions", json=GOOD)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


def test_defaults_over_the_server_limits_are_lowered_to_them(client):
    # num_paths (default 5) and max_tokens (default 4096) are not sent: the server's limits apply.
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Count to ten."}]})
    assert r.status_code == 200, r.text
    md = r.json()["choices"][0]["tts_metadata"]
    assert len(md["candidates"]) == 4
    assert all(c["num_tokens"] <= 16 for c in md["candidates"])


def test_sdk_raises_typed_errors_with_the_field(strict_url):
    client = openai.OpenAI(base_url=f"{strict_url}/v1", api_key=UPSTREAM_SECRET, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            extra_body={"tts_strategy": "nope"},
        )
    assert info.value.body["param"] == "tts_strategy"
    assert info.value.code == "unknown_name"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


# -- auth -------------------------------------------------------------------------------------
def test_api_key_required_on_v1(auth_url):
    with httpx.Client(base_url=auth_url, timeout=60) as c:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": SERVER_KEY}):
            error = assert_error(
                c.post("/v1/chat/completions", json=GOOD, headers=headers), 401, None, "invalid_api_key"
            )
            assert "wrong-key" not in error["message"]
            assert_error(c.get("/v1/models", headers=headers), 401, None, "invalid_api_key")
        # 401 comes before the body is parsed: an unauthenticated client learns nothing more.
        r = c.post("/v1/chat/completions", content=b"{{", headers={"Content-Type": "application/json"})
        assert_error(r, 401, None, "invalid_api_key")
        assert c.get("/health").status_code == 200  # health checks need no key


def test_api_key_accepted(auth_url):
    client = openai.OpenAI(base_url=f"{auth_url}/v1", api_key=SERVER_KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct"]
    out = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        temperature=0,
        extra_body={"num_paths": 1},
    )
    assert out.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{auth_url}/v1", api_key="nope", max_retries=0).models.list()


def test_keys_never_reach_the_log(client, caplog):
    caplog.set_level("DEBUG")
    client.post("/v1/chat/completions", json=msgs(num_paths=0))
    client.post("/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"})
    assert client.post("/v1/chat/completions", json=GOOD).status_code == 200
    assert UPSTREAM_SECRET not in caplog.text


# -- settings and CLI -------------------------------------------------------------------------
def test_settings_from_env_and_flags():
    env = {"LLM_TTS_API_KEY": "secret-k3y", "LLM_TTS_MAX_CONCURRENCY": "3", "LLM_TTS_DEADLINE": "2.5"}
    s = ServiceSettings.from_env(env, max_budget=8)
    assert (s.api_key_value(), s.max_concurrency, s.deadline_s, s.max_budget) == ("secret-k3y", 3, 2.5, 8)
    assert "secret-k3y" not in repr(s)  # the key is a secret, not part of repr


def test_bad_settings_name_the_flag():
    from llm_tts.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="max_concurrency.*--max-concurrency.*LLM_TTS_MAX_CONCURRENCY"):
        ServiceSettings.from_env({"LLM_TTS_MAX_CONCURRENCY": "0"})


def test_serve_flags_parse():
    from llm_tts.cli import build_parser
    from llm_tts.service.server import resolve_port, settings_from_args

    args = build_parser().parse_args(["serve", "--port", "9001", "--max-concurrency", "2", "--deadline", "30"])
    s = settings_from_args(args)
    assert (resolve_port(args.port), s.max_concurrency, s.deadline_s) == (9001, 2, 30.0)


def test_port_from_env(monkeypatch):
    from llm_tts.errors import InvalidParameterError
    from llm_tts.service.server import resolve_port

    monkeypatch.delenv("PORT", raising=False)
    assert resolve_port(None) == 8001
    monkeypatch.setenv("PORT", "8123")
    assert resolve_port(None) == 8123
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(InvalidParameterError, match="PORT"):
        resolve_port(None)


def test_bad_serve_flags_exit_before_loading_a_model(capsys):
    from llm_tts.cli import main

    assert main(["serve", "--max-concurrency", "0"]) == 2
    assert "--max-concurrency" in capsys.readouterr().err


def test_importable_asgi_app_is_built_lazily_from_env(monkeypatch):
    import importlib

    from fastapi import FastAPI
    from uvicorn.importer import import_from_string

    import llm_tts.service as service

    monkeypatch.setenv("LLM_TTS_MAX_BUDGET", "3")
    monkeypatch.setattr(service, "_app", None)
    app = import_from_string("llm_tts.service:app")  # what `uvicorn llm_tts.service:app` does
    assert isinstance(app, FastAPI) and app.state.tts.settings.max_budget == 3
    assert importlib.import_module("llm_tts.service").app is app
