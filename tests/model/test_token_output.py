"""Token in, token out on every face: logprobs with token ids, return_token_ids,
prompt_token_ids as input, streaming chunks, refused OpenAI fields, and ChatTTS's
response_metadata, on the real engine behind a real loopback server and the official SDK."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest

from llm_tts.integrations import ChatTTS
from llm_tts.messages import coerce_messages

MODEL = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer briefly."}]
TINY = {"max_tokens": 8, "temperature": 1.0, "num_paths": 2}
TITO = {"logprobs": True, "top_logprobs": 3, "return_token_ids": True}


@pytest.fixture(scope="module")
def sdk(service_url):
    return openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0, timeout=300)


def _check_entries(content, token_ids, hf_backend):
    assert len(content) == len(token_ids)  # no injected segments in a plain answer
    for entry, tid in zip(content, token_ids):
        assert entry["token_id"] == tid
        assert entry["token"] == hf_backend.token_texts([tid])[0]
        assert entry["logprob"] <= 0.0 and math.isfinite(entry["logprob"])
        assert len(entry["top_logprobs"]) == 3
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True)
        assert all("token_id" in t for t in entry["top_logprobs"])
        assert entry["logprob"] <= tops[0] + 1e-6


def test_logprobs_and_token_ids_in_openai_shape(sdk, hf_backend):
    out = sdk.chat.completions.create(
        model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=3, extra_body={**TINY, **TITO}
    )
    raw = out.model_dump()
    choice = raw["choices"][0]
    prompt_ids = raw["prompt_token_ids"]
    assert prompt_ids == hf_backend.render_chat(coerce_messages(QUESTION))
    token_ids = choice["token_ids"]
    assert hf_backend.decode(token_ids) == choice["message"]["content"]
    # the SDK's own typed view parses the entries
    assert [e.token for e in out.choices[0].logprobs.content] == hf_backend.token_texts(token_ids)
    _check_entries(choice["logprobs"]["content"], token_ids, hf_backend)
    # without the flags nothing extra is sent
    plain = sdk.chat.completions.create(model=MODEL, messages=QUESTION, extra_body=TINY).model_dump()
    assert plain["choices"][0]["logprobs"] is None and plain["choices"][0]["token_ids"] is None


def test_prompt_token_ids_are_consumed_exactly(sdk, hf_backend):
    rendered = hf_backend.render_chat(coerce_messages(QUESTION))
    # a prompt that differs from the rendered chat: a system turn added at the token level
    ids = hf_backend.render_chat(coerce_messages([{"role": "system", "content": "Be terse."}, *QUESTION]))
    assert ids != rendered
    out = sdk.chat.completions.create(
        model=MODEL, messages=QUESTION, extra_body={**TINY, "prompt_token_ids": ids, "return_token_ids": True}
    ).model_dump()
    assert out["prompt_token_ids"] == ids


@pytest.mark.parametrize(
    "ids, fragment",
    [([1, 2, 10**9], "prompt_token_ids"), ([1, -3], "prompt_token_ids"), (["a", 2], "prompt_token_ids"), ([], "")],
)
def test_bad_prompt_token_ids_are_400(service_url, ids, fragment):
    r = httpx.post(
        f"{service_url}/v1/chat/completions", json={"messages": QUESTION, "prompt_token_ids": ids, **TINY}, timeout=60
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith("prompt_token_ids")
    assert httpx.get(f"{service_url}/health").status_code == 200


@pytest.mark.parametrize("field, value", [("logit_bias", {"1": 5}), ("store", True), ("reasoning_effort", "high")])
def test_refused_openai_fields_say_why(service_url, field, value):
    r = httpx.post(f"{service_url}/v1/chat/completions", json={"messages": QUESTION, field: value}, timeout=60)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == field and "not supported:" in err["message"]


def test_top_logprobs_needs_logprobs(service_url):
    r = httpx.post(f"{service_url}/v1/chat/completions", json={"messages": QUESTION, "top_logprobs": 2}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_logprobs"


def test_penalties_are_honoured_and_logprobs_stay_raw(sdk, hf_backend):
    """Greedy on a prompt that invites repetition: the penalties change the answer, and the
    reported logprobs are the raw distribution's (the same for the tokens both runs share)."""
    ids = hf_backend.tokenizer.hf.encode("1 1 1 1 1 1 1 1 1 1 1 1")
    base = {"max_tokens": 12, "temperature": 0.0, "num_paths": 1, "prompt_token_ids": ids, "return_token_ids": True}

    def ask(**penalties):
        out = sdk.chat.completions.create(model=MODEL, messages=QUESTION, logprobs=True, extra_body=base, **penalties)
        return out.model_dump()["choices"][0]

    plain, penalized = ask(), ask(frequency_penalty=2.0, presence_penalty=2.0)
    assert plain["token_ids"] != penalized["token_ids"]
    assert plain["token_ids"][:2] == penalized["token_ids"][:2]
    for a, b in zip(plain["logprobs"]["content"][:2], penalized["logprobs"]["content"][:2]):
        assert a["logprob"] == pytest.approx(b["logprob"], abs=1e-4)


def test_stream_chunks_carry_token_output(service_url, hf_backend):
    body = {"messages": QUESTION, "stream": True, **TINY, **TITO}
    chunks = []
    with httpx.stream("POST", f"{service_url}/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    (answer,) = content
    assert answer["prompt_token_ids"] == hf_backend.render_chat(coerce_messages(QUESTION))
    token_ids = answer["choices"][0]["token_ids"]
    assert hf_backend.decode(token_ids) == answer["choices"][0]["delta"]["content"]
    _check_entries(answer["choices"][0]["logprobs"]["content"], token_ids, hf_backend)


@pytest.mark.parametrize("mode", ["in-process", "http"])
def test_chattts_response_metadata_has_token_output(mode, tts_engine, service_url, hf_backend):
    kwargs = {"engine": tts_engine} if mode == "in-process" else {"base_url": f"{service_url}/v1"}
    llm = ChatTTS(**kwargs, **TINY, return_token_ids=True)
    msg = llm.invoke(QUESTION[0]["content"])
    meta = msg.response_metadata
    assert meta["prompt_token_ids"] == hf_backend.render_chat(coerce_messages(QUESTION[:1]))
    assert hf_backend.decode(meta["token_ids"]) == msg.content
    assert [e["token_id"] for e in meta["logprobs"]] == meta["token_ids"]
    plain = ChatTTS(**kwargs, **TINY).invoke(QUESTION[0]["content"]).response_metadata
    assert "token_ids" not in plain


def test_openai_nulls_mean_the_default(service_url):
    body = {"messages": QUESTION, "logprobs": None, "presence_penalty": None, **TINY}
    r = httpx.post(f"{service_url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"] is None
