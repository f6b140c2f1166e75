"""The request id on a real server through the official openai client and raw HTTP: taken from
``X-Request-Id`` when usable, made otherwise, echoed in the response header, in every error body
(next to OpenAI's message/type/param/code) and on the request's log line; never a key."""

from __future__ import annotations

import logging
import re

import httpx
import openai
import pytest

from llm_tts.service import ServiceSettings, create_app

GOOD = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "num_paths": 1, "temperature": 0}
SERVER_KEY = "server-key-request-id-0123"
MADE = re.compile(r"req-[0-9a-f]{32}")


@pytest.fixture(scope="module")
def sdk(service_url):
    return openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_the_clients_id_comes_back_on_a_completion_and_an_error(sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=GOOD["messages"],  # type: ignore[arg-type]
        max_tokens=2,
        extra_body={"num_paths": 1},
        extra_headers={"X-Request-Id": "client-run:42.a_b"},
    )
    assert raw.headers["x-request-id"] == "client-run:42.a_b"
    assert raw.parse()._request_id == "client-run:42.a_b"  # the SDK reads the same header
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(
            model="smollm2",
            messages=GOOD["messages"],  # type: ignore[arg-type]
            extra_body={"tts_strategy": "nope"},
            extra_headers={"X-Request-Id": "client-run-43"},
        )
    assert err.value.request_id == "client-run-43"
    body = err.value.body
    assert isinstance(body, dict) and body["request_id"] == "client-run-43" and body["param"] == "tts_strategy"


@pytest.mark.parametrize(
    "sent",
    ["", "x" * 129, "has space", "semi;colon", "caf\u00e9", "forged\tlog"],
    ids=["empty", "too-long", "space", "semicolon", "non-ascii", "tab"],
)
def test_an_unusable_id_is_replaced_by_a_made_one(service_url, sent):
    r = httpx.post(
        f"{service_url}/v1/chat/completions",
        json={**GOOD, "num_paths": 0},
        headers={"X-Request-Id": sent.encode("utf-8")},  # type: ignore[dict-item]
        timeout=60,
    )
    assert r.status_code == 400
    made = r.headers["x-request-id"]
    assert MADE.fullmatch(made) and r.json()["error"]["request_id"] == made


def test_every_answer_carries_a_made_id_when_none_is_sent(service_url):
    ids = set()
    with httpx.Client(base_url=service_url, timeout=60) as c:
        for r in (c.get("/health"), c.get("/no/such/route"), c.post("/v1/chat/completions", content=b"{")):
            ids.add(r.headers["x-request-id"])
            assert MADE.fullmatch(r.headers["x-request-id"])
            if r.status_code >= 400:
                assert set(r.json()["error"]) == {"message", "type", "param", "code", "request_id"}
                assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert len(ids) == 3


def test_an_id_equal_to_the_key_never_reaches_the_answer_or_the_log(serve_app, tts_engine, caplog):
    url = serve_app(create_app(tts_engine, ServiceSettings(api_key=SERVER_KEY)))
    caplog.set_level(logging.INFO, logger="llm_tts")
    with httpx.Client(base_url=url, timeout=60) as c:
        auth = {"Authorization": f"Bearer {SERVER_KEY}"}
        ok = c.post("/v1/chat/completions", json=GOOD, headers={**auth, "X-Request-Id": SERVER_KEY})
        refused = c.get("/v1/models", headers={"X-Request-Id": "wrong-key", "Authorization": "Bearer wrong-key"})
    assert ok.status_code == 200 and MADE.fullmatch(ok.headers["x-request-id"])
    assert refused.status_code == 401 and MADE.fullmatch(refused.json()["error"]["request_id"])
    assert SERVER_KEY not in ok.text and SERVER_KEY not in caplog.text and "wrong-key" not in caplog.text


def test_the_requests_log_line_carries_its_id(service_url, caplog):
    caplog.set_level(logging.INFO, logger="llm_tts")
    r = httpx.post(f"{service_url}/v1/chat/completions", json=GOOD, headers={"X-Request-Id": "logged-1"}, timeout=60)
    assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "llm_tts.service.requests"]
    assert [(rec.request_id, rec.getMessage().split(" in ")[0]) for rec in lines] == [  # type: ignore[attr-defined]
        ("logged-1", "POST /v1/chat/completions -> 200")
    ]
    assert all(rec.request_id == "logged-1" for rec in caplog.records if rec.name.startswith("llm_tts"))  # type: ignore[attr-defined]
