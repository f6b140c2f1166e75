"""Structured output and tool calling end to end on the embedded SmolLM2: constrained decoding on
transformers and vLLM, ChatTTS's with_structured_output and bind_tools (in-process and over
HTTP), a LangGraph agent loop, and the service through the official openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.errors import InvalidParameterError
from llm_tts.integrations import ChatTTS
from llm_tts.messages import ChatMessage

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
MULTIPLY = {
    "type": "function",
    "function": {
        "name": "multiply",
        "description": "Multiply two integers a and b",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
SMALL = {"num_paths": 3, "max_tokens": 48}


class Answer(BaseModel):
    """The answer to a question."""

    answer: int
    unit: str


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers a and b."""
    return a * b


def _samples(backend, constraint, n=4, max_tokens=48):
    prompt = backend.render_chat([ChatMessage(role="user", content="Invent a person: name and age, as JSON.")])
    params = SamplingParams(n=n, temperature=1.0, max_tokens=max_tokens, seed=3, constraint=constraint)
    samples = backend.generate([prompt], params)[0]
    assert len(samples) == n  # the callers check each sample: none would pass vacuously
    return samples


def test_transformers_constrained_samples_all_match_the_schema(hf_backend):
    import jsonschema

    for seg in _samples(hf_backend, DecodingConstraint.json_schema(PERSON)):
        jsonschema.validate(json.loads(seg.text), PERSON)
        assert seg.finish_reason == "eos" and len(seg.logprobs) == len(seg.token_ids)


def test_transformers_regex_constraint(hf_backend):
    for seg in _samples(hf_backend, DecodingConstraint("regex", r"(yes|no)"), n=2):
        assert seg.text in ("yes", "no")


def test_a_constraint_that_cannot_compile_is_a_typed_error(hf_backend):
    with pytest.raises(InvalidParameterError):
        _samples(hf_backend, DecodingConstraint("grammar", "root ::= ("), n=1)


def test_vllm_constrained_samples_all_match_the_schema(vllm_backend):
    import jsonschema

    # vLLM on CPU takes no seed: room for a long invented name, so no sample is cut mid-string
    # (a CI run cut one at 48 tokens: "Unterminated string").
    for seg in _samples(vllm_backend, DecodingConstraint.json_schema(PERSON), max_tokens=160):
        assert seg.finish_reason == "eos", seg.text
        jsonschema.validate(json.loads(seg.text), PERSON)


@pytest.fixture(scope="module")
def llm(tts_engine):
    return ChatTTS(engine=tts_engine, **SMALL)


def test_prompt_pipe_structured_output_returns_instances_in_a_batch_of_8(llm):
    chain = ChatPromptTemplate.from_messages([("user", "How many {thing} does a {animal} have?")]) | (
        llm.with_structured_output(Answer)
    )
    animals = ["spider", "cat", "bird", "dog", "ant", "fish", "horse", "snake"]
    out = chain.batch([{"thing": "legs", "animal": a} for a in animals])
    assert len(out) == 8 and all(isinstance(a, Answer) for a in out)


def test_include_raw_reports_the_vote_over_objects(llm):
    out = llm.with_structured_output(PERSON | {"title": "person"}, include_raw=True).invoke("Invent a person.")
    assert out["parsing_error"] is None and set(out["parsed"]) == {"name", "age"}
    meta = out["raw"].response_metadata["tts_metadata"]
    assert meta["structured"]["valid_candidates"] + meta["structured"]["invalid_candidates"] == 3
    assert sum(meta["answer_distribution"].values()) == meta["structured"]["valid_candidates"]
    assert json.loads(meta["selected_answer"]) == out["parsed"]


def test_bad_schema_and_tools_are_typed_errors(llm):
    with pytest.raises(InvalidParameterError):
        llm.with_structured_output(42)
    with pytest.raises(InvalidParameterError):
        llm.bind_tools([{"type": "function", "function": {"description": "nameless"}}])
    with pytest.raises(InvalidParameterError):
        llm.bind_tools([multiply], tool_choice="sometimes")


def test_react_agent_runs_a_two_step_tool_loop(llm):
    from langgraph.prebuilt import create_react_agent

    seen: list[str] = []

    def model(state, runtime):
        # The first turn must call the tool; once its result is in, the model answers in text.
        called = any(m.type == "tool" for m in state["messages"])
        seen.append("answer" if called else "call")
        return llm.bind_tools([multiply], tool_choice="none" if called else "multiply")

    agent = create_react_agent(model, [multiply])
    result = agent.invoke({"messages": [("user", "What is 6 times 7? Use the tool.")]})
    kinds = [m.type for m in result["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"] and seen == ["call", "answer"]
    call = result["messages"][1].tool_calls[0]
    assert call["name"] == "multiply" and result["messages"][2].content == str(multiply.invoke(call["args"]))
    assert not result["messages"][3].tool_calls


# -- the service: the official openai SDK and ChatTTS's HTTP mode -----------------------------------
@pytest.fixture(scope="module")
def sdk(service_url):
    return openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_sdk_forced_tool_call(sdk):
    r = sdk.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
        tools=[MULTIPLY],
        tool_choice="required",
        max_tokens=48,
        extra_body={"num_paths": 3},
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "multiply" and set(json.loads(call.function.arguments)) == {"a", "b"}


def test_sdk_json_schema_response_format(sdk):
    r = sdk.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        max_tokens=48,
        extra_body={"num_paths": 2},
    )
    assert set(json.loads(r.choices[0].message.content)) == {"name", "age"}


def test_sdk_streams_tool_call_chunks(sdk):
    stream = sdk.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
        tools=[MULTIPLY],
        tool_choice={"type": "function", "function": {"name": "multiply"}},
        max_tokens=48,
        stream=True,
        extra_body={"num_paths": 2},
    )
    deltas = [c.choices[0] for c in stream if c.choices]
    calls = [tc for d in deltas for tc in (d.delta.tool_calls or [])]
    assert calls and calls[0].function.name == "multiply" and calls[0].id
    json.loads("".join(tc.function.arguments or "" for tc in calls))
    assert deltas[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [{"type": "function", "function": {"description": "nameless"}}]},
        {"tools": [MULTIPLY], "tool_choice": "sometimes"},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}},
        {"tools": [MULTIPLY], "parallel_tool_calls": "maybe"},
        {"tools": [MULTIPLY], "tts_strategy": "beam_search"},
    ],
)
def test_service_bad_structured_input_is_400(service_url, fields):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}
    r = httpx.post(f"{service_url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_parameter"


def test_chat_tts_http_mode_tool_call_and_structured_output(service_url):
    llm = ChatTTS(base_url=f"{service_url}/v1", **SMALL)
    msg = llm.bind_tools([multiply], tool_choice="any").invoke("What is 6 times 7?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "multiply"
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    assert isinstance(llm.with_structured_output(Answer).invoke("How many legs does a cat have?"), Answer)


def test_tools_go_through_a_chat_template_that_has_a_tools_slot(hf_backend):
    import copy

    from llm_tts.backends.tokenizer import ChatTokenizer

    chat = [ChatMessage(role="user", content="6*7?")]
    assert hf_backend.render_chat_with_tools(chat, [MULTIPLY]) is None  # SmolLM2's template has no tools slot
    hf = copy.deepcopy(hf_backend.tokenizer.hf)
    hf.chat_template = (
        "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}{% endfor %}</tools>{% endif %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
    )
    ids = ChatTokenizer(hf).render_chat_with_tools(chat, [MULTIPLY])
    assert ids is not None and hf.decode(ids).startswith("<tools>multiply</tools>user: 6*7?")


def test_openai_backend_sends_the_constraint_as_response_format(service_url):
    import jsonschema

    from llm_tts.backends.openai_backend import OpenAIBackend

    # Our own service as the OpenAI-compatible server: it reads response_format like OpenAI does.
    backend = OpenAIBackend(base_url=f"{service_url}/v1", max_concurrency=2, extra_body={"num_paths": 1})
    try:
        assert backend.capabilities.constrained_decoding
        # Room for a long invented name: at temperature 1 with no seed (the vLLM CPU build takes
        # none) a 48-token cap cut an object in two of the last four full runs.
        for seg in _samples(backend, DecodingConstraint.json_schema(PERSON), n=2, max_tokens=256):
            jsonschema.validate(json.loads(seg.text), PERSON)
    finally:
        backend.close()
