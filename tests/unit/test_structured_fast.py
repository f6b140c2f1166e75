"""Structured output and tool calling without a model: request checks, parsing, the vote key."""

from __future__ import annotations

import pytest

from fakes import FakeScriptedBackend, Out
from llm_tts.backends.base import BackendCapabilities, SamplingParams, check_constraint
from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import CapabilityError, InvalidParameterError, StructuredOutputError, error_class
from llm_tts.messages import coerce_messages
from llm_tts.structured import output_spec_from_openai
from llm_tts.structured.parsing import parse_candidate
from llm_tts.structured.spec import tool_call_schema

MULTIPLY = {
    "type": "function",
    "function": {
        "name": "multiply",
        "description": "Multiply two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "note": {"type": "string"}},
            "required": ["a", "b"],
        },
    },
}
SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [MULTIPLY], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [MULTIPLY], "tool_choice": {"type": "function", "function": {"name": "add"}}},
            "tool_choice.function.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [MULTIPLY], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}},
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_bad_structured_fields_are_typed_errors_naming_the_field(fields, param):
    with pytest.raises(InvalidParameterError) as e:
        output_spec_from_openai(**fields)
    assert e.value.param == param
    assert e.value.http_status == 400


def test_tool_choice_spellings():
    assert output_spec_from_openai(tools=[MULTIPLY], tool_choice="any").tool_choice == "required"
    assert output_spec_from_openai(tools=[MULTIPLY], tool_choice="multiply").forces_call
    named = {"type": "function", "function": {"name": "multiply"}}
    assert output_spec_from_openai(tools=[MULTIPLY], tool_choice=named).tool_choice == "multiply"
    assert output_spec_from_openai(tools=[MULTIPLY]).constraint() is None  # auto: free text allowed
    assert output_spec_from_openai(tools=[MULTIPLY], tool_choice="none").offered_tools == ()
    assert output_spec_from_openai(response_format={"type": "text"}) is None


def test_forced_call_constraint_is_the_call_schema():
    spec = output_spec_from_openai(tools=[MULTIPLY], tool_choice="required")
    c = spec.constraint()
    assert c is not None and c.kind == "json_schema"
    assert '"const": "multiply"' in c.spec
    two = tool_call_schema([*spec.tools, spec.tools[0].__class__("add")])
    assert [o["properties"]["name"]["const"] for o in two["anyOf"]] == ["multiply", "add"]


def test_parse_json_canonicalises_and_excludes_what_does_not_parse():
    spec = output_spec_from_openai(
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    )
    a = parse_candidate('{"x": 2.0}', spec)
    b = parse_candidate('```json\n{ "x":2 }\n```', spec)
    assert a.key == b.key == '{"x":2}'
    assert parse_candidate('{"x": "two"}', spec).key is None  # parses, but not the schema
    cut = parse_candidate('{"x": 2', spec)
    assert cut.key is None and "not JSON" in (cut.error or "")


def test_tool_call_vote_key_ignores_the_keys_asked_for():
    spec = output_spec_from_openai(tools=[MULTIPLY], tool_choice="required", ignore_argument_keys=["note"])
    a = parse_candidate('{"name": "multiply", "arguments": {"a": 6, "b": 7, "note": "x"}}', spec)
    b = parse_candidate('{"name": "multiply", "arguments": {"b": 7, "a": 6, "note": "y"}}', spec)
    assert a.key == b.key and a.call is not None and a.call.arguments["note"] == "x"
    names_only = output_spec_from_openai(tools=[MULTIPLY], tool_choice="required", ignore_argument_keys=["*"])
    assert (
        parse_candidate('{"name": "multiply", "arguments": {"a": 1, "b": 2}}', names_only).key == '{"name":"multiply"}'
    )
    assert parse_candidate('{"name": "add", "arguments": {}}', spec).key is None  # not an offered tool
    assert parse_candidate('{"name": "multiply", "arguments": {"a": "6"}}', spec).key is None  # bad arguments


def test_auto_tool_choice_votes_text_answers_with_calls():
    spec = output_spec_from_openai(tools=[MULTIPLY])
    assert parse_candidate("6 * 7 = \\boxed{42}", spec).key == "text: 42"
    assert parse_candidate('<tool_call>{"name": "multiply", "arguments": {"a": 6, "b": 7}}</tool_call>', spec).call


def test_a_backend_without_constrained_decoding_refuses_a_constraint():
    params = SamplingParams(constraint=DecodingConstraint.json_object())
    with pytest.raises(CapabilityError):
        check_constraint(params, BackendCapabilities())
    check_constraint(params, BackendCapabilities(constrained_decoding=True))
    with pytest.raises(InvalidParameterError):
        DecodingConstraint("regex", "")


def test_structured_failure_is_typed_and_round_trips_its_code():
    e = StructuredOutputError(3, ["not JSON"])
    assert e.http_status == 422 and error_class(e.code) is StructuredOutputError


def test_openai_assistant_tool_calls_are_rendered_for_the_next_turn():
    msgs = coerce_messages(
        [
            {"role": "user", "content": "6*7?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "multiply", "arguments": '{"a":6,"b":7}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    )
    assert '"name": "multiply"' in msgs[1].content and msgs[2].role == "tool"


# -- the structured run on the FAKE scripted backend (no constrained decoding: it only parses) ----
def _fake_engine(*texts: str):

    # Equal probabilities except where a test needs a tie-break: the first text scores highest.
    return TTSEngine(FakeScriptedBackend({"": [Out(t, 0.9 if i == 0 else 0.5) for i, t in enumerate(texts)]}))


def _run(engine, output, **config):
    return engine.run("q", TTSConfig.create(num_paths=config.pop("n", 4), **config), output=output)


def test_fake_whole_object_majority_excludes_what_does_not_parse():
    spec = output_spec_from_openai(
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    )
    result = _run(_fake_engine('{"x": 2}', '{"x": 1}', '{ "x" : 1.0 }', '{"x": '), spec)
    info = result.metadata.structured
    assert info is not None and not info.constrained  # the fake cannot constrain: parsed only
    assert (info.valid_candidates, info.invalid_candidates) == (3, 1)
    assert info.value == {"x": 1} and result.text == '{"x": 1}'
    assert result.metadata.answer_distribution == {'{"x":2}': 1, '{"x":1}': 2}
    assert [c.status for c in result.metadata.candidates].count("selected") == 1


def test_fake_tool_call_vote_ignoring_a_key():
    calls = [
        '{"name": "multiply", "arguments": {"a": 6, "b": 7, "note": "one"}}',
        '{"name": "multiply", "arguments": {"a": 2, "b": 3, "note": "x"}}',
        '{"name": "multiply", "arguments": {"a": 6, "b": 7, "note": "two"}}',
    ]
    plain = output_spec_from_openai(tools=[MULTIPLY], tool_choice="required")
    tie = _run(_fake_engine(*calls), plain, n=3).metadata.structured
    assert tie is not None and tie.tool_calls[0].arguments["note"] == "one"  # three distinct calls: best score
    ignoring = output_spec_from_openai(tools=[MULTIPLY], tool_choice="required", ignore_argument_keys=["note"])
    result = _run(_fake_engine(*calls[::-1]), ignoring, n=3)
    assert result.metadata.structured.tool_calls[0].arguments == {"a": 6, "b": 7, "note": "two"}
    assert result.metadata.consensus_score == pytest.approx(2 / 3) and result.text == ""


def test_fake_no_parse_is_an_error_for_json_and_forced_calls_and_invalid_for_auto():
    spec = output_spec_from_openai(response_format={"type": "json_object"})
    with pytest.raises(StructuredOutputError):
        _run(_fake_engine("no", "json", "here", "{"), spec)
    with pytest.raises(StructuredOutputError):
        _run(_fake_engine("no", "call", "at", "all"), output_spec_from_openai(tools=[MULTIPLY], tool_choice="required"))
    broken = '{"name": "multiply", "arguments": {"a": "six"}}'
    result = _run(_fake_engine(broken, broken, broken, broken), output_spec_from_openai(tools=[MULTIPLY]))
    info = result.metadata.structured
    assert info is not None and info.tool_calls == [] and info.invalid_tool_calls[0].name == "multiply"
    assert info.invalid_tool_calls[0].args == broken


def test_fake_structured_runs_refuse_step_strategies():
    spec = output_spec_from_openai(response_format={"type": "json_object"})
    with pytest.raises(InvalidParameterError) as e:
        _run(_fake_engine("{}"), spec, tts_strategy="beam_search", n=None)
    assert e.value.param == "tts_strategy"


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [MULTIPLY], "tool_choice": {"type": "function", "function": ["multiply"]}},
        {"tools": [MULTIPLY], "ignore_argument_keys": 5},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
    ],
)
def test_malformed_structured_fields_of_any_shape_are_typed_errors(fields):
    with pytest.raises(InvalidParameterError):
        output_spec_from_openai(**fields)


def test_json_inside_prose_parses():
    spec = output_spec_from_openai(response_format={"type": "json_object"})
    assert parse_candidate('Here it is: {"a": {"b": 1}} and more {"c": 2}', spec).value == {"a": {"b": 1}}
    assert parse_candidate("Here it is: {not json} {", spec).key is None


def test_fake_a_reasoning_models_object_is_parsed_from_its_answer_never_its_thinking():
    spec = output_spec_from_openai(
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    )
    texts = ['<think>Maybe {"x": 2}? No.</think>{"x": 1}'] * 2 + ['<think>{"x": 2}']  # the last one never answers
    result = _run(_fake_engine(*texts), spec, n=3)
    info = result.metadata.structured
    assert info is not None and (info.valid_candidates, info.invalid_candidates) == (2, 1)
    assert info.value == {"x": 1} and result.text == '{"x": 1}'
    assert result.reasoning == 'Maybe {"x": 2}? No.'
