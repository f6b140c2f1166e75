"""A reasoning chat template on the embedded SmolLM2 (real model, transformers backend).

No reasoning model can be downloaded here, so the tests ship a Qwen3-style template
(tests/data/qwen3_style_thinking.jinja, given through chat_template_kwargs as a request can): its
generation prompt opens the thinking, ``enable_thinking=False`` renders a closed empty one instead,
and earlier answers are re-rendered without their thinking. SmolLM2 then thinks inside the opened span; budget forcing closes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.messages import coerce_messages
from llm_tts.sessions import build_samples
from llm_tts.sessions.records import record_of

QWEN3_STYLE = (Path(__file__).parents[1] / "data" / "qwen3_style_thinking.jinja").read_text()
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]
BUDGET = 6
SETTINGS = {"num_paths": 1, "temperature": 0.0, "max_tokens": 16, "tts_thinking_budget": BUDGET}


@pytest.fixture(scope="module")
def engine(hf_backend):
    return TTSEngine(hf_backend)


def run(engine: TTSEngine, messages, **settings):
    config = TTSConfig.create(**{**SETTINGS, "chat_template_kwargs": {"chat_template": QWEN3_STYLE}, **settings})
    return engine.run(coerce_messages(messages), config)


def test_a_template_that_opens_the_thinking_is_budget_forced_to_answer(engine, hf_backend):
    result = run(engine, QUESTION)
    thinking, closing, answer = result.trajectory.segments
    assert (len(thinking), thinking.source, closing.source, answer.source) == (BUDGET, "model", "injected", "model")
    assert closing.text == "</think>"
    assert result.reasoning == thinking.text
    assert result.text == answer.text
    (candidate,) = result.metadata.candidates
    assert (candidate.reasoning_tokens, candidate.thinking_finished) == (BUDGET, True)
    assert candidate.thinking_tokens == BUDGET + len(closing)
    assert result.trajectory.loss_mask() == [1] * BUDGET + [0] * len(closing) + [1] * len(answer)


def test_enable_thinking_false_reaches_the_template_and_the_completion_is_all_answer(engine):
    result = run(
        engine,
        QUESTION,
        tts_thinking_budget=None,
        chat_template_kwargs={"chat_template": QWEN3_STYLE, "enable_thinking": False},
    )
    assert engine.backend.decode(result.trajectory.prompt_token_ids).endswith("<think>\n\n</think>\n\n")
    assert result.reasoning is None
    assert result.metadata.candidates[0].thinking_finished is None


def test_a_session_over_a_template_that_drops_earlier_thinking_yields_the_exact_sampled_tokens(engine, hf_backend):
    first = run(engine, QUESTION)
    follow_up = [*QUESTION, {"role": "assistant", "content": first.text}, {"role": "user", "content": "And 3 + 4?"}]
    second = run(engine, follow_up)
    records = [
        record_of("s", {}, msgs, r, {"choices": [{"message": {"role": "assistant", "content": r.text}}]}, started=0.0)
        for msgs, r in ((QUESTION, first), (follow_up, second))
    ]
    (sample,) = build_samples(records, hf_backend.tokenizer.eos_token_ids, None)
    sampled = list(first.trajectory.completion_token_ids)
    prompt = list(first.trajectory.prompt_token_ids)
    assert sample.tokens[: len(prompt) + len(sampled)] == prompt + sampled  # what the model really produced
    assert sample.tokens[-len(second.trajectory.completion_token_ids) :] == list(second.trajectory.completion_token_ids)
    assert sample.metadata["turns"] == 2 and len(sample.metadata["rerendered_turns"]) == 1
    closing = len(first.trajectory.segments[1])
    assert records[0].chosen.thinking_tokens == BUDGET + closing  # the injected end marker is part of it
    first_span, second_span = sample.metadata["thinking_spans"]
    assert first_span == [0, BUDGET + closing]
    assert sample.loss_mask[: BUDGET + closing] == [1] * BUDGET + [0] * closing  # sampled thinking is trained on
    assert second_span[1] - second_span[0] == records[1].chosen.thinking_tokens
    assert second_span[1] == sample.response_length - len(second.trajectory.segments[2])
