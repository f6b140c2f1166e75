"""Text completions (/v1/completions) end to end through the official openai SDK's completions API:
token ids in and out exactly (no detokenize-retokenize), a text prompt, a search, a stream, a
session's turns turned into one training sample, and bad input answered with OpenAI-shaped 400s."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from llm_tts.messages import coerce_messages
from llm_tts.service import ServiceSettings, create_app

MODEL = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer briefly."}]
TINY = {"num_paths": 1, "temperature": 1.0, "seed": 3}
IDS = {"return_token_ids": True}


@pytest.fixture(scope="module")
def url(serve_app, tts_engine):
    return serve_app(create_app(tts_engine, ServiceSettings(session_store="memory")))


@pytest.fixture(scope="module")
def sdk(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_token_ids_in_reach_the_model_exactly_and_come_back(sdk, hf_backend):
    # The question spelled one character per token: ids no tokenizer would produce from its text, so a
    # detokenize-retokenize round trip would change them.
    rendered = hf_backend.render_chat(coerce_messages(QUESTION))
    text = hf_backend.decode(rendered)
    ids = [t for ch in text for t in hf_backend.encode(ch)]
    assert ids != hf_backend.encode(text)
    out = sdk.completions.create(model=MODEL, prompt=ids, max_tokens=6, logprobs=2, extra_body={**TINY, **IDS})
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    choice = out.choices[0]
    assert choice.model_extra["prompt_token_ids"] == ids
    token_ids = choice.model_extra["token_ids"]
    assert token_ids and hf_backend.decode(token_ids) == choice.text
    assert choice.finish_reason in ("stop", "length")
    # logprobs=k in OpenAI's completions shape: one entry per sampled token, k most likely beside it
    lp = choice.logprobs
    assert lp.tokens == hf_backend.token_texts(token_ids)
    assert all(math.isfinite(v) and v <= 0.0 for v in lp.token_logprobs)
    assert all(1 <= len(top) <= 2 for top in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert out.usage.prompt_tokens >= len(ids) and out.usage.completion_tokens >= len(token_ids)
    assert choice.model_extra["tts_metadata"]["strategy"] == "self_consistency"


def test_a_text_prompt_is_its_tokens_without_a_template(sdk, hf_backend):
    text = "Question: What is 2 + 3?\nAnswer:"
    greedy = {"num_paths": 1, "temperature": 0.0, **IDS}
    by_text = sdk.completions.create(model=MODEL, prompt=text, max_tokens=4, extra_body=greedy).choices[0]
    ids = hf_backend.encode(text)
    assert by_text.model_extra["prompt_token_ids"] == ids  # no chat template, no special token added
    by_ids = sdk.completions.create(model=MODEL, prompt=[ids], max_tokens=4, extra_body=greedy).choices[0]
    assert (by_ids.text, by_ids.model_extra["token_ids"]) == (by_text.text, by_text.model_extra["token_ids"])


def test_self_consistency_votes_over_paths_of_a_raw_prompt(sdk, hf_backend):
    prompt = hf_backend.render_chat(coerce_messages(QUESTION))
    extra = {"tts_strategy": "self_consistency", "num_paths": 2, "temperature": 1.0, "seed": 5, **IDS}
    choice = sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=6, extra_body=extra).choices[0]
    meta = choice.model_extra["tts_metadata"]
    assert meta["strategy"] == "self_consistency" and len(meta["candidates"]) == 2
    assert sum(c["status"] == "selected" for c in meta["candidates"]) == 1
    assert hf_backend.decode(choice.model_extra["token_ids"]) == choice.text


def test_a_stream_ends_with_the_text_its_token_ids_and_the_metadata(sdk, hf_backend):
    prompt = hf_backend.render_chat(coerce_messages(QUESTION))
    chunks = list(
        sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=6, stream=True, extra_body={**TINY, **IDS})
    )
    assert {c.object for c in chunks} == {"text_completion"} and len({c.id for c in chunks}) == 1
    (content,) = [c.choices[0] for c in chunks if c.choices[0].text]
    assert content.model_extra["prompt_token_ids"] == prompt
    assert hf_backend.decode(content.model_extra["token_ids"]) == content.text
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length") and last.usage.completion_tokens > 0
    assert last.choices[0].model_extra["tts_metadata"]["strategy"] == "self_consistency"


def test_session_turns_are_recorded_and_merge_into_one_sample(url, hf_backend):
    sid = httpx.post(f"{url}/sessions", timeout=30).json()["id"]
    agent = openai.OpenAI(base_url=f"{url}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=300)
    prompt1 = hf_backend.render_chat(coerce_messages(QUESTION))
    first = agent.completions.create(model=MODEL, prompt=prompt1, max_tokens=5, logprobs=0, extra_body={**TINY, **IDS})
    out1 = first.choices[0].model_extra["token_ids"]
    between = hf_backend.encode("\nuser\nAnd 3 + 4?\nassistant\n")  # the trainer's own template
    prompt2 = [*prompt1, *out1, *between]
    second = agent.completions.create(model=MODEL, prompt=prompt2, max_tokens=5, logprobs=0, extra_body={**TINY, **IDS})
    out2 = second.choices[0].model_extra["token_ids"]

    records = httpx.get(f"{url}/sessions/{sid}", timeout=30).json()["records"]
    assert [r["prompt_token_ids"] for r in records] == [prompt1, prompt2]  # exactly the ids given
    assert [r["messages"] for r in records] == [[], []] and records[0]["request"]["prompt"] == prompt1
    reward = {"rewards": [{"completion_id": second.id, "reward": 1.0}]}
    assert httpx.post(f"{url}/sessions/{sid}/rewards", json=reward, timeout=30).status_code == 200
    samples = httpx.post(f"{url}/sessions/{sid}/samples", json={"candidates": "selected"}, timeout=60).json()["data"]
    (sample,) = samples
    assert sample["tokens"] == prompt2 + out2 and sample["metadata"]["turns"] == 2
    assert sample["loss_mask"] == [1] * len(out1) + [0] * len(between) + [1] * len(out2)
    sampled = [lp for c in (first, second) for lp in c.choices[0].logprobs.token_logprobs]
    assert [lp for lp, m in zip(sample["rollout_log_probs"], sample["loss_mask"]) if m] == sampled
    assert sample["reward"] == 1.0


CHAT_ONLY = "a chat field"


@pytest.mark.parametrize(
    "body, param, says",
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": []}, "prompt", "empty"),
        ({"prompt": [1, 10**9]}, "prompt", "token ids must be integers in"),
        ({"prompt": [1, -3]}, "prompt", "token ids must be integers in"),
        ({"prompt": [1, "a"]}, "prompt[1]", "integers"),
        ({"prompt": [1, True]}, "prompt[1]", "integers"),
        ({"prompt": ["one", "two"]}, "prompt", "one prompt per request"),
        ({"prompt": [[1], [2]]}, "prompt", "one prompt per request"),
        ({"max_tokens": 2}, "prompt", "required"),
        ({"prompt": "x", "prompt_token_ids": [1]}, "prompt_token_ids", "as prompt"),
        ({"prompt": "x", "messages": QUESTION}, "messages", CHAT_ONLY),
        ({"prompt": "x", "tools": []}, "tools", CHAT_ONLY),
        ({"prompt": "x", "top_logprobs": 2}, "top_logprobs", "logprobs=k"),
        ({"prompt": "x", "chat_template_kwargs": {"enable_thinking": False}}, "chat_template_kwargs", CHAT_ONLY),
        ({"prompt": "x", "continue_final_message": True}, "continue_final_message", CHAT_ONLY),
        ({"prompt": "x", "echo": True}, "echo", "not supported"),
        ({"prompt": "x", "suffix": "y"}, "suffix", "not supported"),
        ({"prompt": "x", "logit_bias": {"1": 5}}, "logit_bias", "not supported"),
        ({"prompt": "x", "n": 2}, "n", ""),
        ({"prompt": "x", "logprobs": 50}, "logprobs", ""),
    ],
)
def test_bad_input_is_an_openai_shaped_400(url, body, param, says):
    r = httpx.post(f"{url}/v1/completions", json={"max_tokens": 2, **body}, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and says in error["message"] and error["type"] == "invalid_request_error"


def test_the_sdk_raises_bad_request_and_a_session_records_nothing_bad(url):
    sid = httpx.post(f"{url}/sessions", timeout=30).json()["id"]
    agent = openai.OpenAI(base_url=f"{url}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as err:
        agent.completions.create(model=MODEL, prompt=[1, 10**9], max_tokens=2)
    assert err.value.body["param"] == "prompt"
    assert httpx.get(f"{url}/sessions/{sid}", timeout=30).json()["records"] == []
