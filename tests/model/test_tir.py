"""Tool-integrated reasoning on the embedded model (SmolLM2-135M), the real sandbox, both faces.

A 135M model does not write code on cue, so a call is seeded the way a client would
(``continue_final_message``): the assistant message ends with a code block that has not run;
the block runs first, its output is injected, and the model continues from it, in every
strategy, in-process (ChatTTS) and through the service (the official openai client).
"""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage

from llm_tts.engine import TTSEngine
from llm_tts.errors import SandboxUnavailableError
from llm_tts.integrations import ChatTTS
from llm_tts.service import ServiceSettings, create_app

QUESTION = "What is 123 * 457?"
SEED = "I will compute it with Python.\n<tool_call>\nx = 123 * 457\nprint(x)\n</tool_call>"
OUTPUT = "\n<tool_output>\n56211\n</tool_output>\n"
MESSAGES = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": SEED}]
SEEDED = {"code_execution": True, "continue_final_message": True, "max_tokens": 12, "seed": 3}

STRATEGIES = {
    "self_consistency": {"num_paths": 2},
    "offline_bon": {"tts_num_trajectories": 2},
    "online_bon": {"tts_candidates_per_step": 2, "tts_max_steps": 2, "tts_step_max_tokens": 6},
    "beam_search": {"tts_beam_size": 2, "tts_candidates_per_step": 1, "tts_max_steps": 2, "tts_step_max_tokens": 6},
    "dvts": {"tts_num_subtrees": 2, "tts_candidates_per_step": 1, "tts_max_steps": 2, "tts_step_max_tokens": 6},
    "particle_filtering": {"tts_num_particles": 2, "tts_max_steps": 2, "tts_step_max_tokens": 6},
}


def run(engine: TTSEngine, messages=MESSAGES, **fields):
    return engine.run(messages, {**SEEDED, "num_paths": 1, "temperature": 0.0, **fields})


def test_seeded_call_gets_the_output_and_continues_from_it(tts_engine):
    result = run(tts_engine)
    assert result.text.startswith(OUTPUT)
    first, *rest = result.trajectory.segments
    assert (first.source, first.text) == ("injected", OUTPUT)
    assert rest and all(s.source == "model" for s in rest) and len(result.text) > len(OUTPUT)
    # generation continued from the exact ids: prompt, then the output's ids, then the model's
    assert result.trajectory.token_ids[: len(result.trajectory.prompt_token_ids)] == result.trajectory.prompt_token_ids
    assert result.trajectory.loss_mask()[: len(first)] == [0] * len(first)
    (execution,) = result.metadata.candidates[0].code_executions
    assert (execution.code, execution.output, execution.status) == ("x = 123 * 457\nprint(x)", "56211\n", "ok")
    assert result.metadata.code_execution is not None and result.metadata.code_execution.executions == 1


def test_two_blocks_share_state(tts_engine):
    seed = (
        "<tool_call>\nx = 123 * 457\n</tool_call>\n<tool_output>\n</tool_output>\n"
        "<tool_call>\nprint(x + 1)\n</tool_call>"
    )
    result = run(tts_engine, [MESSAGES[0], {"role": "assistant", "content": seed}])
    assert result.text.startswith("\n<tool_output>\n56212\n</tool_output>\n")


def test_output_truncation_and_timeout_on_the_model(tts_engine):
    long = [MESSAGES[0], {"role": "assistant", "content": "<tool_call>\nprint('a' * 5000)\n</tool_call>"}]
    result = run(tts_engine, long, max_code_output_characters=100, max_tokens=4)
    assert result.text.startswith("\n<tool_output>\n" + "a" * 100 + "\n[output truncated: 4901 more characters")
    slow = [MESSAGES[0], {"role": "assistant", "content": "<tool_call>\nimport time\ntime.sleep(30)\n</tool_call>"}]
    result = run(tts_engine, slow, code_execution_timeout=0.5, max_tokens=4)
    assert "[execution timed out after 0.5 s and was stopped]" in result.text
    assert result.metadata.candidates[0].code_executions[0].status == "timeout"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_in_process_chattts(tts_engine, strategy):
    llm = ChatTTS(engine=tts_engine, tts_strategy=strategy, **SEEDED, **STRATEGIES[strategy])
    msg = llm.invoke([HumanMessage(QUESTION), AIMessage(SEED)])
    assert msg.content.startswith(OUTPUT)
    meta = msg.response_metadata["tts_metadata"]
    assert meta["code_execution"]["executions"] == 1  # the seed ran once, for every branch
    for cand in meta["candidates"]:
        assert cand["text"].startswith(OUTPUT) and cand["code_executions"][0]["output"] == "56211\n"


@pytest.fixture(scope="module")
def sdk(service_url):
    return openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_through_the_service(sdk, strategy):
    out = sdk.chat.completions.create(
        model="smollm2",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=12,
        seed=3,
        extra_body={
            "tts_strategy": strategy,
            "code_execution": True,
            "continue_final_message": True,
            **STRATEGIES[strategy],
        },
    )
    choice = out.choices[0]
    assert choice.message.content is not None and choice.message.content.startswith(OUTPUT)
    meta = choice.model_extra["tts_metadata"]
    assert meta["code_execution"]["executions"] == 1
    assert meta["candidates"][0]["code_executions"][0]["status"] == "ok"


def test_a_block_printing_100_mb_leaves_a_small_response_and_session_record(service_url):
    """Over HTTP, in a session: the response and the stored record keep what the model saw (the
    first max_code_output_characters), the capture's length and its sha256; never the 1 MiB capture."""
    created = httpx.post(f"{service_url}/sessions", json={}, timeout=30)
    assert created.status_code == 200, created.text
    session = created.json()["id"]
    client = openai.OpenAI(base_url=f"{service_url}/sessions/{session}/v1", api_key="x", max_retries=0, timeout=300)
    loud = [MESSAGES[0], {"role": "assistant", "content": "<tool_call>\nprint('x' * 100_000_000)\n</tool_call>"}]
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=loud,  # type: ignore[arg-type]
        max_tokens=2,
        extra_body={"code_execution": True, "continue_final_message": True, "num_paths": 2},
    )
    assert len(raw.content) < 20_000  # was over 2 MiB: the whole capture, once per path
    meta = raw.parse().choices[0].model_extra["tts_metadata"]
    cap = 1 << 20  # the sandbox's default output cap (SandboxLimits.output_bytes)
    digest = hashlib.sha256(b"x" * cap).hexdigest()
    shown = "x" * 1000 + f"\n[output truncated: {cap - 1000} more characters not shown]"  # the default cut
    for cand in meta["candidates"]:
        (execution,) = cand["code_executions"]
        assert execution["status"] == "killed"
        assert (execution["output"], execution["output_bytes"], execution["output_sha256"]) == (shown, cap, digest)
    detail = httpx.get(f"{service_url}/sessions/{session}", timeout=30)
    assert detail.status_code == 200 and len(detail.content) < 40_000
    (record,) = detail.json()["records"]
    stored = record["response"]["choices"][0]["tts_metadata"]["candidates"][0]["code_executions"][0]
    assert (stored["output"], stored["output_bytes"], stored["output_sha256"]) == (shown, cap, digest)


def test_service_answers_4xx_when_the_sandbox_cannot_start(serve_app, hf_backend, monkeypatch):
    url = serve_app(create_app(TTSEngine(hf_backend), ServiceSettings(max_concurrency=2)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap on this "machine"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="smollm2",
            messages=MESSAGES[:1],
            max_tokens=4,
            extra_body={"code_execution": True},  # type: ignore[arg-type]
        )
    assert err.value.code == "sandbox_unavailable" and "bubblewrap" in str(err.value)
    with pytest.raises(SandboxUnavailableError):
        TTSEngine(hf_backend).plan(MESSAGES[:1], {"code_execution": True})
