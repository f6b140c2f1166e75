"""Tool-integrated reasoning on the FAKE scripted backend (it cannot write code on its own, a real
model can: see test_tir.py) with the REAL sandbox: the loop's mechanics, pinned exactly."""

from __future__ import annotations

import hashlib

import pytest

from fakes import FakeScriptedBackend, FakeScriptedScorer, Out, run_strategy
from llm_tts.backends.base import BackendCapabilities
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError
from llm_tts.tir import CodeRunner

USER = [{"role": "user", "content": "What is 123 * 457?"}]


def block(code: str) -> str:
    return f"<tool_call>\n{code}\n</tool_call>"


def output(text: str, note: str = "") -> str:
    body = f"{text}\n" if text else ""
    return f"\n<tool_output>\n{body}</tool_output>\n{note}"


@pytest.fixture(scope="module")
def runner():
    r = CodeRunner()
    yield r
    r.close()


def engine(script, runner) -> TTSEngine:
    return TTSEngine(FakeScriptedBackend(script), code_runner=runner)


def run(script, runner, **config):
    return engine(script, runner).run(USER, {"code_execution": True, "temperature": 1.0, **config})


def test_fake_block_runs_its_output_is_injected_and_generation_continues(runner):
    first = "Let me compute.\n" + block("print(123 * 457)")
    seen = first + output("56211")
    result = run({"": [first + " never seen"], seen: ["The answer is \\boxed{56211}."]}, runner, num_paths=1)
    assert result.text == seen + "The answer is \\boxed{56211}."
    sources = [(s.source, s.text) for s in result.trajectory.segments]
    assert sources == [("model", first), ("injected", output("56211")), ("model", "The answer is \\boxed{56211}.")]
    assert result.trajectory.loss_mask().count(0) == len(output("56211"))
    (cand,) = result.metadata.candidates
    assert [(e.code, e.output, e.status) for e in cand.code_executions] == [("print(123 * 457)", "56211\n", "ok")]
    totals = result.metadata.code_execution
    assert totals is not None and totals.executions == 1 and totals.statuses["ok"] == 1
    assert result.metadata.selected_answer == "56211"


def test_fake_state_persists_along_a_trajectory(runner):
    a = block("x = 123 * 457")
    b = block("print(x + 1)")
    script = {"": [a], a + output(""): [b], a + output("") + b + output("56212"): ["\\boxed{56212}"]}
    result = run(script, runner, num_paths=1)
    assert result.text.endswith(output("56212") + "\\boxed{56212}")
    assert [e.status for e in result.metadata.candidates[0].code_executions] == ["ok", "ok"]


def test_fake_answer_is_taken_after_the_last_output(runner):
    a = "I guess \\boxed{7}.\n" + block("print(6 * 7)")
    result = run({"": [a], a + output("42"): ["So it is 42."]}, runner, num_paths=1)
    assert result.metadata.selected_answer == "42"


def test_fake_output_is_truncated_with_a_visible_marker(runner):
    a = block("print('a' * 50)")
    shown = output("a" * 10 + "\n[output truncated: 41 more characters not shown]")
    result = run({"": [a], a + shown: ["done"]}, runner, num_paths=1, max_code_output_characters=10)
    assert shown in result.text
    (execution,) = result.metadata.candidates[0].code_executions
    assert execution.output == "a" * 10 + "\n[output truncated: 41 more characters not shown]"  # what the model saw
    assert (execution.output_bytes, execution.output_sha256) == (51, hashlib.sha256(b"a" * 50 + b"\n").hexdigest())


def test_fake_a_block_printing_100_mb_leaves_a_small_record(runner):
    """The sandbox reads back at most 1 MiB and kills the block; the metadata and the trace keep the
    1,000 characters the model saw, the capture's length and its digest, never the capture."""
    a = block("print('x' * 100_000_000)")
    cap = runner.pool.limits.output_bytes
    note = "[execution was stopped: it wrote too much output]"
    shown = output("x" * 1000 + f"\n[output truncated: {cap - 1000} more characters not shown]\n" + note)
    script = {"": [a, a], a + shown: ["done", "done"]}
    result = run(script, runner, num_paths=2, max_code_output_characters=1000, tts_trace=True)
    assert result.text == a + shown + "done"
    for cand in result.metadata.candidates:
        (execution,) = cand.code_executions
        assert execution.status == "killed" and execution.output.startswith("x" * 1000 + "\n[output truncated")
        assert len(execution.output) < 1100
        assert (execution.output_bytes, execution.output_sha256) == (cap, hashlib.sha256(b"x" * cap).hexdigest())
    trace = result.metadata.trace
    assert trace is not None and len(trace.model_dump_json()) < 10_000
    assert len(result.metadata.model_copy(update={"trace": None}).model_dump_json()) < 10_000
    for node in trace.nodes[1:]:
        (execution,) = node.code_executions
        assert (execution.status, execution.output_bytes) == ("killed", cap) and len(execution.output) < 1100
        assert execution.output_sha256 == hashlib.sha256(b"x" * cap).hexdigest()
    assert [e.type for e in trace.events].count("code_execution") == 2


def test_fake_after_max_code_executions_the_model_is_told_and_blocks_do_not_run(runner):
    a = block("print(1)")
    b = block("print(2)")
    refused = output("Code execution limit reached (1); this block was not run. Continue without code.")
    first = output("1", "You have no code executions left. Continue without code.\n")
    script = {"": [a], a + first: [b], a + first + b + refused: ["\\boxed{1}"]}
    result = run(script, runner, num_paths=1, max_code_executions=1, add_remaining_code_executions=True)
    assert [e.status for e in result.metadata.candidates[0].code_executions] == ["ok", "limit"]
    totals = result.metadata.code_execution
    assert totals is not None and totals.executions == 1 and totals.statuses["limit"] == 1


def test_fake_remaining_executions_note(runner):
    a = block("print(1)")
    first = output("1", "You have 2 code executions left.\n")
    result = run(
        {"": [a], a + first: ["ok"]}, runner, num_paths=1, max_code_executions=3, add_remaining_code_executions=True
    )
    assert first in result.text


def test_fake_errors_and_timeouts_are_outputs_with_a_status(runner):
    a = block("1 / 0")
    b = block("import time\ntime.sleep(10)")
    err_out = 'Traceback (most recent call last):\n  File "<tool_call>", line 1, in <module>\nZeroDivisionError: division by zero'
    timed = output("[execution timed out after 0.5 s and was stopped]")
    script = {"": [a], a + output(err_out): [b], a + output(err_out) + b + timed: ["end"]}
    result = run(script, runner, num_paths=1, code_execution_timeout=0.5)
    assert [e.status for e in result.metadata.candidates[0].code_executions] == ["error", "timeout"]


def test_fake_tags_are_configurable(runner):
    a = "```python\nprint(2 + 2)\n```"
    out = "\n```output\n4\n```\n"
    tags = {"code_begin": "```python", "code_end": "```\n", "code_output_begin": "```output", "code_output_end": "```"}
    result = run({"": [a + "\nrest"], a + "\n" + out: ["\\boxed{4}"]}, runner, num_paths=1, **tags)
    assert result.metadata.candidates[0].code_executions[0].output == "4\n"


def test_fake_continue_final_message_runs_the_pending_block_first(runner):
    seed = "Let me compute.\n" + block("x = 123 * 457\nprint(x)")
    messages = [*USER, {"role": "assistant", "content": seed}]
    # the fake's template renders the assistant turn and then its own "<assistant>" marker
    eng = engine({f"{seed}\n<assistant>" + output("56211"): ["So \\boxed{56211}."]}, runner)
    result = eng.run(messages, {"code_execution": True, "continue_final_message": True, "num_paths": 1})
    assert result.text == output("56211") + "So \\boxed{56211}."
    assert result.trajectory.segments[0].source == "injected"
    assert result.metadata.candidates[0].code_executions[0].output == "56211\n"


def test_fake_continue_final_message_needs_an_assistant_message(runner):
    with pytest.raises(InvalidParameterError, match="continue_final_message"):
        engine({}, runner).plan(USER, {"code_execution": True, "continue_final_message": True})


def test_fake_beam_search_branches_keep_separate_state_and_a_block_is_one_step(runner):
    one, two, show = block("x = 1"), block("x = 2"), block("print(x)")
    step1 = {one: one + output("") + "Set.\n\n", two: two + output("") + "Set.\n\n"}
    script = {
        "": [one, two],
        one + output(""): ["Set.\n\n"],
        two + output(""): ["Set.\n\n"],
        step1[one]: [show],
        step1[two]: [show],
        step1[one] + show + output("1"): ["\\boxed{1}"],
        step1[two] + show + output("2"): ["\\boxed{2}"],
    }
    scores = {
        step1[one]: 0.9,
        step1[two]: 0.8,
        step1[one] + show + output("1") + "\\boxed{1}": 0.9,
        step1[two] + show + output("2") + "\\boxed{2}": 0.8,
    }
    backend = FakeScriptedBackend(script)
    outcome = run_strategy_with_code_execution(
        "beam_search", backend, runner, FakeScriptedScorer(scores), tts_beam_size=2, tts_candidates_per_step=1
    )
    by_answer = {b.answer: b for b in outcome.candidates}
    assert set(by_answer) == {"1", "2"}  # each branch printed its own x
    beam = by_answer["1"]
    assert len(beam.steps) == 2  # (block, output, words), then (block, output, answer)
    assert [s.text for s in beam.steps] == [step1[one], show + output("1") + "\\boxed{1}"]
    assert [e.code for e in beam.executions] == ["x = 1", "print(x)"]
    assert [e.code for e in by_answer["2"].executions] == ["x = 2", "print(x)"]
    # a step's samples that continue after their outputs go to the backend in one call
    assert [len(c.prefixes) for c in backend.calls] == [1, 2, 2, 2]


def test_fake_step_does_not_end_at_a_blank_line_inside_a_block(runner):
    code = "<tool_call>\nx = 2\n\nprint(x * 3)\n</tool_call>"
    head, tail = code.split("\n\n", 1)
    script = {"": [head + "\n\n"], head + "\n\n": [tail], code + output("6"): ["\\boxed{6}"]}
    backend = FakeScriptedBackend(script)
    outcome = run_strategy_with_code_execution("online_bon", backend, runner, None, tts_candidates_per_step=1)
    beam = outcome.selected
    assert len(beam.steps) == 1 and beam.answer == "6"


def run_strategy_with_code_execution(strategy, backend, runner, scorer, **config):
    from fakes import QUESTION
    from llm_tts.config import TTSConfig
    from llm_tts.messages import ChatMessage
    from llm_tts.strategies import CodeExecutionSampler, StrategyContext, get_strategy
    from llm_tts.tir import CodeExecutionLoop, CodeExecutionSettings

    cfg = TTSConfig.create(tts_strategy=strategy, code_execution=True, temperature=1.0, **config)
    msgs = [ChatMessage(role="user", content=QUESTION)]
    sampler = CodeExecutionSampler(CodeExecutionLoop(CodeExecutionSettings.from_config(cfg), runner, backend, msgs))
    scorer = scorer or FakeScriptedScorer(_AnyScore())
    ctx = StrategyContext(strategy, backend, scorer, cfg, backend.render_chat(msgs), QUESTION, sampler=sampler)
    return get_strategy(strategy).run(ctx)


class _AnyScore(dict):
    def __missing__(self, key):
        return 0.5


def test_fake_without_code_execution_nothing_runs(runner):
    a = block("print(1)")
    backend = FakeScriptedBackend({"": [a + " tail"]})
    result = TTSEngine(backend, code_runner=runner).run(USER, {"num_paths": 1})
    assert result.text == a + " tail" and result.metadata.code_execution is None
    assert (
        run_strategy("self_consistency", FakeScriptedBackend({"": [a]}), None, num_paths=1).outcome.selected.executions
        == []
    )


def test_fake_chat_only_api_gets_the_trajectory_as_messages(runner):
    """No continuation: after a block the API is sent the request's messages, the model's text up to
    the closing tag as an assistant turn and the output block as a user turn."""
    a = block("print(123 * 457)")
    backend = FakeScriptedBackend({})
    backend.capabilities = BackendCapabilities(continuation=False, chat_only=True)
    # the fake renders "<role>content\n" per message, then "<assistant>"; the script is keyed by the
    # text after the first "<assistant>"
    carried = f"{a}\n<user><tool_output>\n56211\n</tool_output>\n<assistant>"
    backend.script = {"": [Out(a)], carried: [Out("\\boxed{56211}")]}
    result = TTSEngine(backend, code_runner=runner).run(USER, {"code_execution": True, "num_paths": 1})
    assert [s.source for s in result.trajectory.segments] == ["model", "injected", "model"]
    assert result.text == a + output("56211") + "\\boxed{56211}"


def test_fake_budget_forcing_with_code_execution_closes_the_thinking_after_the_budget(runner):
    first = "<think>Compute.\n" + block("print(2 + 3)")
    seen = first + output("5")
    script = {
        "": [first + " never seen"],
        seen: [" so it is five, surely"],
        seen + " so </think>": ["The answer is 5."],
    }
    budget = len(seen) + 4  # the thinking call's budget counts the injected output too
    result = run(script, runner, num_paths=1, tts_thinking_budget=budget)
    sources = [(s.source, s.text) for s in result.trajectory.segments]
    assert sources == [
        ("model", first),
        ("injected", output("5")),
        ("model", " so "),
        ("injected", "</think>"),
        ("model", "The answer is 5."),
    ]
    (cand,) = result.metadata.candidates
    assert [e.output for e in cand.code_executions] == ["5\n"]
    assert (result.text, result.metadata.selected_answer) == ("The answer is 5.", "5")
    assert cand.reasoning_tokens == len(first) + 4  # sampled thinking only: the output and marker were injected
