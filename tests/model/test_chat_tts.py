"""ChatTTS in-process: fields, typed errors, message handling, secrets, and real runs on the
embedded model (invoke, per-call overrides, bind, streaming, callbacks, async, shared engines)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages import ChatMessage as LCChatMessage
from langchain_core.prompts import ChatPromptTemplate

from llm_tts.config import TTSConfig
from llm_tts.errors import DeadlineExceededError, InvalidParameterError, UnknownNameError
from llm_tts.integrations import ChatTTS
from llm_tts.integrations.lc_messages import to_chat_messages
from llm_tts.metadata import TTSMetadata

SMALL = {"backend": "transformers", "num_paths": 2, "max_tokens": 12}
Q = "What is 2 + 3?"


@pytest.fixture(scope="module")
def llm(embedded_model_dir) -> ChatTTS:
    """In-process ChatTTS on the embedded model through the shared engine cache (the real default path)."""
    return ChatTTS(**SMALL)


# -- fields and typed errors (no model needed) ---------------------------------------------------
def test_every_ttsconfig_field_is_a_chattts_field_with_the_same_default():
    llm = ChatTTS()
    for name, info in TTSConfig.model_fields.items():
        assert name in ChatTTS.model_fields, name
        assert ChatTTS.model_fields[name].annotation == info.annotation, name
        assert getattr(llm, name) == info.get_default(call_default_factory=True), name
    assert llm.tts_config() == TTSConfig()


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"tts_beam_size": 0}, "tts_beam_size"),
        ({"tts_beam_size": 17}, "tts_beam_size"),
        ({"num_paths": 1000}, "num_paths"),
        ({"tts_score_aggregation": "median"}, "tts_score_aggregation"),
        ({"temperature": 3.0}, "temperature"),
        ({"tts_budget": 0}, "tts_budget"),
        ({"timeout": -1}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_out_of_range_values_raise_typed_errors_naming_the_field(kwargs, param):
    with pytest.raises(InvalidParameterError) as e:
        ChatTTS(**kwargs)
    assert e.value.param == param
    assert param in str(e.value)


def test_a_misspelt_parameter_is_an_unknown_name_error_listing_the_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        ChatTTS(tts_beamsize=4)
    assert "tts_beamsize" in str(e.value) and "tts_beam_size" in str(e.value)


def test_base_url_and_engine_together_are_rejected(tts_engine):
    with pytest.raises(InvalidParameterError, match="not both"):
        ChatTTS(base_url="http://127.0.0.1:9/v1", engine=tts_engine)


def test_bad_per_call_overrides_fail_before_any_work():
    llm = ChatTTS(backend="no-such-backend")  # would fail if anything tried to build an engine
    with pytest.raises(InvalidParameterError, match="tts_beam_size"):
        llm.invoke(Q, tts_beam_size=999)
    with pytest.raises(UnknownNameError, match="tts_beamsize"):
        llm.invoke(Q, tts_beamsize=2)
    with pytest.raises(InvalidParameterError, match="tts_window_size"):
        llm.bind(tts_window_size=0).invoke(Q)


def test_api_key_is_secret_and_never_printed(monkeypatch):
    secret = "sk-very-secret-123"
    llm = ChatTTS(base_url="http://127.0.0.1:9/v1", api_key=secret)
    assert llm.api_key is not None and llm.api_key.get_secret_value() == secret
    for text in (repr(llm), str(llm), llm.model_dump_json(), str(dumpd(llm)), repr(llm._service())):
        assert secret not in text
    monkeypatch.setenv("LLM_TTS_API_KEY", "from-env-456")
    assert ChatTTS(base_url="http://127.0.0.1:9/v1").api_key.get_secret_value() == "from-env-456"


def test_langsmith_params_name_provider_model_and_sampling():
    llm = ChatTTS(temperature=0.2, max_tokens=7, stop=["END"])
    params = llm._get_ls_params()
    assert params == {
        "ls_provider": "llm_tts",
        "ls_model_name": "SmolLM2-135M-Instruct",
        "ls_model_type": "chat",
        "ls_temperature": 0.2,
        "ls_max_tokens": 7,
        "ls_stop": ["END"],
    }
    assert llm._get_ls_params(model="other")["ls_model_name"] == "other"


# -- messages ------------------------------------------------------------------------------------
def test_every_message_type_becomes_a_chat_turn():
    msgs = to_chat_messages(
        [
            SystemMessage("Be brief."),
            HumanMessage([{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}], name="ann"),
            AIMessage("Let me add.", tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "call_1"}]),
            ToolMessage("4", tool_call_id="call_1"),
            AIMessage([{"type": "reasoning", "reasoning": "scratch"}, {"type": "text", "text": "It is 4."}]),
            LCChatMessage("And 3+3?", role="human"),
        ]
    )
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert msgs[1].content == "What is 2+2?" and msgs[1].name == "ann"
    assert msgs[2].content.startswith("Let me add.\n") and '"name": "add"' in msgs[2].content
    assert msgs[3].tool_call_id == "call_1" and msgs[3].content == "4"
    assert msgs[4].content == "It is 4."  # the reasoning block is not fed back as prompt text
    assert msgs[5].content == "And 3+3?"


def test_images_are_a_typed_error_naming_the_message():
    image = HumanMessage([{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "x"}}])
    with pytest.raises(InvalidParameterError) as e:
        ChatTTS(backend="no-such-backend").invoke([SystemMessage("hi"), image])
    assert e.value.param == "messages[1].content"
    assert "only text" in str(e.value)


def test_unknown_role_is_a_typed_error():
    with pytest.raises(InvalidParameterError, match="role"):
        to_chat_messages([LCChatMessage("x", role="narrator")])


# -- real runs on the embedded model ---------------------------------------------------------------
def test_invoke_returns_answer_usage_and_full_metadata(llm):
    msg = llm.invoke(Q)
    assert isinstance(msg, AIMessage) and isinstance(msg.content, str) and msg.content
    usage = msg.usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = msg.response_metadata
    assert meta["model_name"] == "SmolLM2-135M-Instruct"
    assert meta["finish_reason"] in ("stop", "length")
    md = meta["tts_metadata"]
    assert set(md) == set(TTSMetadata.model_fields)
    assert md["strategy"] == "self_consistency" and md["backend"] == "transformers"
    assert len(md["candidates"]) == 2
    assert md["usage"]["completion_tokens"] == usage["output_tokens"]
    assert [c["text"] for c in md["candidates"] if c["status"] == "selected"] == [msg.content]


def test_per_call_overrides_and_bind_change_the_run(llm):
    msg = llm.invoke(Q, tts_budget=3)  # the simple knob: self_consistency's num_paths
    assert len(msg.response_metadata["tts_metadata"]["candidates"]) == 3
    bound = llm.bind(tts_strategy="offline_bon", tts_num_trajectories=2, tts_scorer="perplexity")
    md = bound.invoke(Q).response_metadata["tts_metadata"]
    assert (md["strategy"], md["scorer"], len(md["candidates"])) == ("offline_bon", "perplexity", 2)


def test_stream_yields_progress_then_the_answer_then_metadata(llm):
    chunks = list(
        llm.stream(
            Q,
            tts_strategy="beam_search",
            tts_beam_size=2,
            tts_candidates_per_step=2,
            tts_max_steps=2,
            tts_step_max_tokens=6,
            tts_scorer="entropy",
        )
    )
    progress = [c for c in chunks if "tts_progress" in c.response_metadata]
    assert progress, "beam search reports its steps"
    assert all(c.content == "" for c in progress)
    first_text = next(i for i, c in enumerate(chunks) if c.content)
    assert chunks.index(progress[0]) < first_text
    last = chunks[-1]
    assert last.chunk_position == "last" and last.usage_metadata["output_tokens"] > 0
    md = last.response_metadata["tts_metadata"]
    assert md["strategy"] == "beam_search"
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.content == next(c["text"] for c in md["candidates"] if c["status"] == "selected")
    steps = [p["step"] for p in full.response_metadata["tts_progress"]]
    assert steps == sorted(steps) and steps[0] == 1


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.events.append(("start", kwargs.get("invocation_params", {})))

    def on_custom_event(self, name, data, *, run_id, **kwargs):
        self.events.append((name, data))

    def on_llm_end(self, response, **kwargs):
        self.events.append(("end", response.generations[0][0].message))


def test_callbacks_see_the_run_and_its_progress_as_custom_events(llm):
    rec = _Recorder()
    llm.invoke(
        Q,
        config={"callbacks": [rec]},
        tts_strategy="beam_search",
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_max_steps=2,
        tts_step_max_tokens=6,
    )
    kinds = [k for k, _ in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    progress = [d for k, d in rec.events if k == "tts_progress"]
    assert progress and {"strategy", "step", "live_beams", "finished", "best_score"} <= set(progress[0])
    assert rec.events[-1][1].response_metadata["tts_metadata"]["strategy"] == "beam_search"


async def test_astream_events_of_a_chain_carry_progress_as_custom_events(llm):
    # stream()/astream() give a chat model no run manager, so inside a chain the progress goes to
    # the chain's run as custom events, and to the model's run as stream chunks.
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
    events = [ev async for ev in chain.astream_events({"q": Q}, version="v2")]
    custom = [ev for ev in events if ev["event"] == "on_custom_event"]
    assert custom and all(ev["name"] == "tts_progress" for ev in custom)
    assert {"step", "live_beams", "best_score"} <= set(custom[0]["data"])
    streamed = [ev["data"]["chunk"] for ev in events if ev["event"] == "on_chat_model_stream"]
    assert any("tts_progress" in c.response_metadata for c in streamed)
    assert events[-1]["event"] == "on_chain_end"


async def test_ainvoke_does_not_block_the_event_loop(llm):
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    msg = await llm.ainvoke(Q)
    during = ticks - before
    done.set()
    await task
    assert msg.content
    assert during >= 5, f"the event loop ran only {during} ticks while the engine worked"


async def test_abatch_and_astream(llm):
    results = await llm.abatch([Q, "What is 1 + 1?"])
    assert all(isinstance(r, AIMessage) and r.content for r in results)
    chunks = [c async for c in llm.astream(Q)]
    assert chunks[-1].chunk_position == "last" and "tts_metadata" in chunks[-1].response_metadata


def test_instances_share_one_engine_per_model_and_backend(llm):
    other = ChatTTS(backend="transformers", tts_strategy="beam_search", tts_beam_size=3)
    assert other._engine_for(None) is llm._engine_for(None)


def test_timeout_is_the_run_deadline(llm):
    quick = ChatTTS(**SMALL, timeout=1e-6)
    with pytest.raises(DeadlineExceededError):
        quick.invoke(Q, tts_strategy="beam_search", tts_beam_size=2, tts_candidates_per_step=2, tts_max_steps=3)


def test_conversation_with_every_message_type_runs(llm):
    msg = llm.invoke(
        [
            SystemMessage("You are a calculator."),
            HumanMessage("Add 2 and 2."),
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "c1"}]),
            ToolMessage("4", tool_call_id="c1"),
            HumanMessage([{"type": "text", "text": "So what is the sum?"}]),
        ]
    )
    assert msg.content
