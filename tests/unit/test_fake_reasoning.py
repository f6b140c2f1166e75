"""Reasoning models on FAKES (the scripted backend writes <think> ... </think>; no model runs).

A scripted backend decides every completion, so these pin exact decisions: a decoy answer in the
thinking never wins a vote, a trajectory cut inside its thinking never votes, budget forcing
injects the end marker exactly once at the budget, and step searches end a step at </think>.
"""

from __future__ import annotations

import pytest

from fakes import FakeScriptedBackend
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError, UnknownNameError
from llm_tts.messages import ChatMessage
from llm_tts.reasoning import TagThinkingParser, ThinkingReader

pytestmark = pytest.mark.fast

ASK = [ChatMessage(role="user", content="What is 2 + 3?")]
DECOY = "<think>Maybe \\boxed{7}? No, recount.</think>The answer is 5."


def run(script: dict[str, list[str]], **config: object):
    engine = TTSEngine(FakeScriptedBackend(script))
    return engine.run(ASK, engine.plan(ASK, {"temperature": 1.0, **config}).config)


def test_fake_reasoning_a_decoy_answer_in_the_thinking_never_wins_the_vote():
    paths = [DECOY, DECOY, "<think>Hmm.</think>The answer is 9."]
    parsed = run({"": paths}, num_paths=3)
    assert parsed.metadata.selected_answer == "5"
    assert parsed.text == "The answer is 5."
    assert parsed.reasoning == "Maybe \\boxed{7}? No, recount."
    # the same paths read as plain text: the boxed decoy in the thinking wins
    assert run({"": paths}, num_paths=3, reasoning_parser="none").metadata.selected_answer == "7"


def test_fake_reasoning_a_path_cut_inside_its_thinking_has_no_answer_and_never_votes():
    paths = ["<think>It is 7, so 7", "<think>7 and 7", "<think>Add.</think>The answer is 5."]
    result = run({"": paths}, num_paths=3)
    assert result.metadata.selected_answer == "5"
    assert result.metadata.answer_distribution == {"5": 1}
    cut = [c for c in result.metadata.candidates if c.thinking_finished is False]
    assert len(cut) == 2
    assert all(c.answer is None and c.answer_text == "" and c.reasoning_tokens == len(c.text) for c in cut)


def test_fake_reasoning_candidates_carry_their_split_and_usage_counts_thinking_tokens():
    result = run({"": ["<think>Add.</think>The answer is 5."]}, num_paths=1)
    (c,) = result.metadata.candidates
    assert (c.reasoning, c.answer_text, c.thinking_finished) == ("Add.", "The answer is 5.", True)
    assert c.reasoning_tokens == len("<think>Add.</think>")  # one token per character; markers included
    assert (
        result.metadata.usage.completion_tokens_details.reasoning_tokens
        == c.reasoning_tokens
        == result.reasoning_tokens
    )


def test_fake_reasoning_a_plain_answer_has_no_thinking():
    result = run({"": ["The answer is 5."]}, num_paths=1)
    (c,) = result.metadata.candidates
    assert (c.reasoning, c.answer_text, c.thinking_finished, c.reasoning_tokens) == (None, None, None, 0)
    assert result.reasoning is None and result.text == "The answer is 5."


def test_fake_reasoning_a_template_that_opens_the_thinking_starts_the_completion_inside_it():
    # The fake template ends the prompt with "<think>\n" when asked: no begin marker in the output.
    result = run({"": ["maybe 7</think>The answer is 5."]}, num_paths=1, chat_template_kwargs={"opens_thinking": True})
    assert (result.reasoning, result.text, result.metadata.selected_answer) == ("maybe 7", "The answer is 5.", "5")


def test_fake_budget_forcing_injects_the_end_marker_once_at_the_budget_and_the_model_answers():
    long_thinking = "<think>" + "a" * 50 + "</think>The answer is 9."
    script = {
        "": [long_thinking, "<think>ok</think>The answer is 5."],
        "<think>ok</think>": ["The answer is 5."],
        "<think>aaaaaaaaaaaaa</think>\nAnswer:": [" 5"],
    }
    backend = FakeScriptedBackend(script)
    engine = TTSEngine(backend)
    result = engine.run(ASK, {"num_paths": 2, "tts_thinking_budget": 20, "tts_thinking_answer_cue": "\nAnswer:"})
    first, second = backend.calls
    assert (first.n, first.max_tokens, first.stop) == (2, 20, ("</think>",))  # the thinking stops at the budget
    assert second.prefixes == ("<think>aaaaaaaaaaaaa</think>\nAnswer:", "<think>ok</think>")
    forced = result.candidate_trajectories[0]
    assert [(s.text, s.source) for s in forced.segments] == [
        ("<think>aaaaaaaaaaaaa", "model"),
        ("</think>\nAnswer:", "injected"),
        (" 5", "model"),
    ]
    assert forced.loss_mask() == [1] * 20 + [0] * len("</think>\nAnswer:") + [1, 1]
    assert [len(t.segments) for t in result.candidate_trajectories] == [3, 2]  # injected exactly once
    assert result.metadata.selected_answer == "5"
    assert result.metadata.candidates[0].reasoning_tokens == 20


def test_fake_budget_forcing_in_a_step_search_closes_the_thinking_and_the_next_step_answers():
    script = {
        "": ["<think>step one\n\n"],
        "<think>step one\n\n": ["more thinking that goes on\n\n"],
        "<think>step one\n\nmore </think>": [" The answer is 5."],
    }
    backend = FakeScriptedBackend(script)
    engine = TTSEngine(backend)
    config = {"tts_strategy": "online_bon", "tts_scorer": "perplexity", "tts_candidates_per_step": 1}
    result = engine.run(ASK, engine.plan(ASK, {**config, "tts_thinking_budget": 22}).config)
    assert [c.max_tokens for c in backend.calls] == [22, 5, 256]  # no step thinks past the budget
    segments = result.trajectory.segments
    assert [(s.text, s.source) for s in segments] == [
        ("<think>step one\n\n", "model"),
        ("more ", "model"),
        ("</think>", "injected"),
        (" The answer is 5.", "model"),
    ]
    assert result.metadata.selected_answer == "5"
    assert result.metadata.candidates[0].truncated_steps == 0


def test_fake_step_search_ends_a_step_at_the_end_of_the_thinking():
    script = {
        "": ["<think>a\n\nb</think>The answer is 5."],
        "<think>a\n\n": ["b</think>The answer is 5."],
        "<think>a\n\nb</think>": ["The answer is 5."],
    }
    backend = FakeScriptedBackend(script)
    engine = TTSEngine(backend)
    result = engine.run(
        ASK,
        engine.plan(
            ASK, {"tts_strategy": "online_bon", "tts_scorer": "perplexity", "tts_candidates_per_step": 1}
        ).config,
    )
    assert [c.stop for c in backend.calls] == [("\n\n", "</think>")] * 3
    assert result.metadata.reasoning_steps == 3
    assert (result.reasoning, result.text) == ("a\n\nb", "The answer is 5.")


def test_fake_reasoning_bad_settings_are_typed_errors():
    engine = TTSEngine(FakeScriptedBackend({}))
    with pytest.raises(InvalidParameterError, match="tts_thinking_budget"):
        engine.plan(ASK, {"tts_thinking_budget": -1})
    with pytest.raises(UnknownNameError, match="reasoning parser"):
        engine.plan(ASK, {"reasoning_parser": "no_such_family"})
    with pytest.raises(InvalidParameterError, match="tts_thinking_budget"):
        engine.plan(ASK, {"tts_thinking_budget": 8, "reasoning_parser": "none"})


@pytest.mark.parametrize(
    ("text", "opened", "thinking", "answer", "finished"),
    [
        ("<think>a</think>b", False, "a", "b", True),
        ("\n<think>a</think>\nb", False, "a", "\nb", True),
        ("a</think>b", True, "a", "b", True),
        ("<think>a", False, "a", "", False),
        ("a", True, "a", "", False),
        ("plain </think> text", False, "", "plain </think> text", True),
    ],
)
def test_tag_parser_splits_thinking_from_answer(text, opened, thinking, answer, finished):
    split = ThinkingReader(TagThinkingParser(), opened).split(text)
    assert (split.thinking, split.answer, split.finished) == (thinking, answer, finished)
    assert text[split.answer_start :] == split.answer


def test_earlier_thinking_reaches_the_template_from_every_face():
    from langchain_core.messages import AIMessage, HumanMessage

    from llm_tts.integrations.lc_messages import to_chat_messages
    from llm_tts.messages import coerce_messages
    from llm_tts.service.protocol import ChatCompletionRequest

    openai_turns = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "The answer is 5.", "reasoning_content": "Add."},
        {"role": "user", "content": "and?"},
    ]
    lc_turns = [
        HumanMessage("q"),
        AIMessage("The answer is 5.", additional_kwargs={"reasoning_content": "Add."}),
        HumanMessage("and?"),
    ]
    faces = [
        coerce_messages(openai_turns),
        ChatCompletionRequest(messages=openai_turns).to_messages(),
        to_chat_messages(lc_turns),
    ]
    for messages in faces:
        assert messages[1].reasoning == "Add."
        assert messages[1].to_template_dict()["reasoning_content"] == "Add."
        assert "reasoning_content" not in messages[0].to_template_dict()


def test_fake_budget_forcing_with_a_stopping_rule_votes_on_the_forced_answers():
    thinking = "<think>" + "a" * 30 + "</think>The answer is 5."
    script = {"": [thinking] * 8, "<think>aaaaaaaaaaaaa</think>": ["The answer is 5."] * 8}
    result = run(script, num_paths=8, tts_stop_confidence=0.8, tts_thinking_budget=20)
    assert result.metadata.selected_answer == "5"
    assert result.metadata.stopped_by == "confidence"  # settled before all 8 paths were sampled
    answered = [c for c in result.metadata.candidates if c.answer == "5"]
    assert answered and all(c.thinking_finished and c.reasoning_tokens == 20 for c in answered)
    assert len(result.metadata.candidates) < 8


def test_fake_budget_forcing_in_deepconf_scores_the_thinking_and_votes_on_the_answers():
    thinking = "<think>" + "a" * 30 + "</think>The answer is 5."
    script = {"": [thinking] * 4, "<think>aaaaaaaaaaaaa</think>": ["The answer is 5."] * 4}
    result = run(script, tts_strategy="deepconf", tts_deepconf_mode="offline", num_paths=4, tts_thinking_budget=20)
    assert result.metadata.selected_answer == "5"
    assert all(c.reasoning_tokens == 20 for c in result.metadata.candidates)
