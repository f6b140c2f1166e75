"""A request's spans and cost over HTTP: the official openai client against the real service on
loopback, spans read back with the SDK's in-memory exporter."""

from __future__ import annotations

import time

import openai


def _spans_once_request_ended(exporter, request_id: str):
    """The finished spans, once the request's own span has ended (just after its response)."""
    give_up = time.monotonic() + 30
    while True:
        finished = exporter.get_finished_spans()
        if any(s.attributes.get("llm_tts.request_id") == request_id for s in finished):
            return finished
        assert time.monotonic() < give_up, "the request's span never ended"
        time.sleep(0.05)


def test_a_request_span_carries_its_id_and_holds_the_plan_and_the_run(service_url, exported_spans):
    client = openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=4,
        extra_body={"tts_strategy": "self_consistency", "num_paths": 2},
        extra_headers={"X-Request-Id": "spans-run-1"},
    )
    cost = raw.parse().model_dump()["choices"][0]["tts_metadata"]["cost"]
    finished = _spans_once_request_ended(exported_spans, "spans-run-1")
    (request,) = [s for s in finished if s.name == "llm_tts.request"]
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["url.path"] == "/v1/chat/completions"
    (plan,) = [s for s in finished if s.name == "llm_tts.plan"]
    (run,) = [s for s in finished if s.name == "llm_tts.run"]
    assert plan.parent.span_id == run.parent.span_id == request.context.span_id  # through the run's threads
    (step,) = [s for s in finished if s.name == "llm_tts.step"]  # self-consistency reports once
    (call,) = [s for s in finished if s.name == "llm_tts.generate"]  # every path in one backend call
    assert step.parent.span_id == run.context.span_id and call.parent.span_id == step.context.span_id
    assert call.attributes["llm_tts.samples"] == 2
    assert call.attributes["gen_ai.usage.output_tokens"] == cost["generated_tokens"] > 0
    assert run.attributes["llm_tts.flops"] == cost["flops"] > 0
    assert cost["prompt_tokens"] == plan.attributes["llm_tts.prompt_tokens"]  # one prompt, prefilled once
