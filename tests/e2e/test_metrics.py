"""``/metrics`` on a real server: parsed with Prometheus's own text parser after real requests
through the official openai client (plain, streamed, in a session, with code execution, refused),
every counter moved by exactly what those requests did; the API key guards it like ``/v1``."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_tts.service import ServiceSettings, create_app

KEY = "metrics-key-0123"
HI = [{"role": "user", "content": "What is 2 + 3?"}]
SEED = [HI[0], {"role": "assistant", "content": "<tool_call>\nprint(2 + 3)\n</tool_call>"}]
OUTPUT = "\n<tool_output>\n5\n</tool_output>\n"


@pytest.fixture(scope="module")
def server(serve_app, tts_engine):
    """A fresh app (its own registry: counts start at zero) behind an API key."""
    return serve_app(create_app(tts_engine, ServiceSettings(api_key=KEY, max_concurrency=2)))


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_key(server):
    assert httpx.get(f"{server}/metrics", timeout=30).status_code == 401
    wrong = httpx.get(f"{server}/metrics", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_counters_move_by_what_the_requests_did(server, hf_backend):
    before = scrape(server)
    assert value(before, "llm_tts_requests_running") == 0 and value(before, "llm_tts_requests_queued") == 0
    sdk = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=300)
    small = {"model": "smollm2", "max_tokens": 4, "seed": 1}
    outs = [
        sdk.chat.completions.create(messages=HI, extra_body={"num_paths": 2}, **small),  # type: ignore[arg-type]
        sdk.chat.completions.create(messages=HI, extra_body={"num_paths": 2}, **small),  # type: ignore[arg-type]
        sdk.chat.completions.create(
            messages=HI,  # type: ignore[arg-type]
            extra_body={
                "tts_strategy": "beam_search",
                "tts_beam_size": 2,
                "tts_candidates_per_step": 1,
                "tts_max_steps": 2,
                "tts_step_max_tokens": 2,
            },
            **small,
        ),
        sdk.chat.completions.create(
            messages=SEED,  # type: ignore[arg-type]
            extra_body={"num_paths": 1, "code_execution": True, "continue_final_message": True},
            **small,
        ),
    ]
    stream = sdk.chat.completions.create(messages=HI, stream=True, extra_body={"num_paths": 1}, **small)  # type: ignore[arg-type]
    chunks = list(stream)  # to [DONE]: the response has ended before the scrape
    streamed = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(messages=HI, extra_body={"tts_strategy": "nope"}, **small)  # type: ignore[arg-type]
    session = httpx.post(f"{server}/sessions", json={}, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    in_session = openai.OpenAI(base_url=f"{server}/sessions/{session.json()['id']}/v1", api_key=KEY, max_retries=0)
    outs.append(in_session.chat.completions.create(messages=HI, extra_body={"num_paths": 1}, **small))  # type: ignore[arg-type]
    assert OUTPUT in (outs[3].choices[0].message.content or "")

    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        moved("llm_tts_requests_total", strategy="self_consistency", status="200") == 5
    )  # 2 + code + stream + session
    assert moved("llm_tts_requests_total", strategy="beam_search", status="200") == 1
    assert moved("llm_tts_requests_total", strategy="unknown", status="400") == 1
    assert moved("llm_tts_request_duration_seconds_count", strategy="self_consistency") == 5
    assert moved("llm_tts_time_to_first_token_seconds_count", strategy="beam_search") == 1
    assert moved("llm_tts_time_to_first_token_seconds_count", strategy="unknown") == 0  # it never answered
    metas = [o.choices[0].model_extra["tts_metadata"] for o in outs]  # type: ignore[index]
    metas.insert(2, streamed.choices[0].model_extra["tts_metadata"])  # type: ignore[index]
    by = {"self_consistency": [m for m in metas if m["strategy"] == "self_consistency"], "beam_search": [metas[3]]}
    assert metas[3]["strategy"] == "beam_search"
    for strategy, ms in by.items():
        usage = [m["usage"] for m in ms]
        assert moved("llm_tts_tokens_total", strategy=strategy, kind="generated") == sum(
            u["completion_tokens"] for u in usage
        )
        assert moved("llm_tts_tokens_total", strategy=strategy, kind="prompt") == sum(u["prompt_tokens"] for u in usage)
        assert moved("llm_tts_steps_total", strategy=strategy) == sum(m["reasoning_steps"] for m in ms)
        costs = [m["cost"] for m in ms]
        for kind, field in (("computed_prompt", "prompt_tokens"), ("cached_prompt", "cached_prompt_tokens")):
            assert moved("llm_tts_tokens_total", strategy=strategy, kind=kind) == sum(c[field] for c in costs)
        assert moved("llm_tts_estimated_flops_total", strategy=strategy) == pytest.approx(
            sum(c["flops"] for c in costs)
        )
    injected = len(hf_backend.encode(OUTPUT))
    assert moved("llm_tts_tokens_total", strategy="self_consistency", kind="injected") == injected
    assert moved("llm_tts_sandbox_executions_total", status="ok") == 1
    assert moved("llm_tts_sandbox_execution_seconds_count") == 1
    assert moved("llm_tts_session_records_total") == 1
    assert value(after, "llm_tts_requests_running") == 0 and value(after, "llm_tts_requests_queued") == 0
