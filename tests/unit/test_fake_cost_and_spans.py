"""Cost accounting and spans where no model is needed: code execution on the FAKE scripted backend
(it cannot write code on its own) with the REAL sandbox, the injected-token count on real
trajectories, OpenTelemetry absent, and the exporters the OTEL_* environment asks for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fakes import FakeScriptedBackend
from llm_tts import spans
from llm_tts.backends.cost import injected_tokens
from llm_tts.backends.usage import usage_of
from llm_tts.engine import TTSEngine
from llm_tts.tir import CodeRunner
from llm_tts.types import Segment, Trajectory

USER = [{"role": "user", "content": "What is 123 * 457?"}]
FIRST = "Let me compute.\n<tool_call>\nprint(123 * 457)\n</tool_call>"
OUTPUT = "\n<tool_output>\n56211\n</tool_output>\n"


def test_fake_code_execution_counts_injected_tokens_and_spans_each_sandbox_run(exported_spans):
    backend = FakeScriptedBackend({"": [FIRST, FIRST], FIRST + OUTPUT: ["The answer is \\boxed{56211}."]})
    runner = CodeRunner()
    try:
        result = TTSEngine(backend, code_runner=runner).run(
            USER, {"code_execution": True, "temperature": 1.0, "num_paths": 2}
        )
    finally:
        runner.close()
    cost = result.metadata.cost
    assert cost.injected_tokens == 2 * len(OUTPUT)  # the fake's tokens are characters; one output per path
    assert cost.model_parameters is None and cost.flops is None  # a model of unknown size: no FLOPs estimate
    finished = exported_spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    runs = [s for s in finished if s.name == "llm_tts.sandbox"]
    assert len(runs) == result.metadata.code_execution.executions == 2  # run concurrently, in pool threads
    assert all(s.attributes["llm_tts.sandbox.status"] == "ok" for s in runs)
    assert all(by_id[s.parent.span_id].name == "llm_tts.step" for s in runs)  # the threads carry the context


def test_an_injection_shared_by_candidates_counts_once():
    prompt = (1, 2)
    model = Segment((3, 4), "ab")
    tool = Segment.injected((5, 6, 7), "out")
    shared = Trajectory(prompt, (model, tool))
    a = shared.extend(Segment((8,), "c"), Segment.injected((9,), "x"))
    b = shared.extend(Segment((10,), "d"))
    same_text_elsewhere = Trajectory(prompt, (Segment((3, 4), "ab"), Segment.injected((5, 6, 7), "out")))
    assert injected_tokens([a, b]) == 3 + 1
    assert injected_tokens([a, b, same_text_elsewhere]) == 3 + 1 + 3  # another path's own injection


def test_cached_prompt_tokens_are_read_where_a_server_reports_them():
    usage = {"prompt_tokens": 90, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64}}
    assert usage_of(usage) == (90, 7, 64)
    assert usage_of({"prompt_tokens": 90, "completion_tokens": 7, "prompt_tokens_details": None}) == (90, 7, 0)


def test_without_opentelemetry_every_span_is_one_shared_no_op(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import opentelemetry now fails
    spans.use_tracer_provider(None)  # forget the tracer looked up before
    try:
        first, second = spans.span("llm_tts.run", {"llm_tts.strategy": "x"}), spans.span("llm_tts.step")
        assert first is second
        with first as opened:
            assert opened is spans.NO_SPAN
            opened.set({"llm_tts.step": 1})
        assert spans.open_span("llm_tts.step") is spans.NO_SPAN
    finally:
        monkeypatch.undo()
        spans.use_tracer_provider(None)


def test_the_otel_environment_chooses_the_exporter_and_llm_tts_names_the_service():
    pytest.importorskip("opentelemetry.sdk")  # the otel extra (in dev)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"
    code = (
        "from llm_tts import spans\n"
        "assert spans.configure_from_environment()\n"
        "with spans.span('llm_tts.run', {'llm_tts.strategy': 'beam_search'}): pass\n"
    )  # the provider flushes its batch at exit
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"name": "llm_tts.run"' in out.stdout and '"llm_tts.strategy": "beam_search"' in out.stdout
    assert f'"service.name": "{spans.SERVICE_NAME}"' in out.stdout
