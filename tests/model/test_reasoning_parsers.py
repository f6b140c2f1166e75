"""vLLM's real reasoning parsers (the CPU build) behind llm-tts's parser interface.

The embedded SmolLM2 tokenizer gets <think> and </think> as added tokens, as a reasoning model's
vocabulary has them (vLLM's parsers look their ids up)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm.reasoning")

from llm_tts.errors import InvalidParameterError, UnknownNameError
from llm_tts.reasoning import ThinkingReader, create_thinking_parser, vllm_parser_names


@pytest.fixture(scope="module")
def thinking_tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir))
    tokenizer.add_tokens(["<think>", "</think>"])
    return tokenizer


@pytest.mark.parametrize("name", ["deepseek_r1", "qwen3"])
def test_vllm_parsers_split_thinking_from_answer(name, thinking_tokenizer):
    parser = create_thinking_parser(name, tokenizer=thinking_tokenizer)
    assert (parser.begin_marker, parser.end_marker) == ("<think>", "</think>")
    split = ThinkingReader(parser).split("<think>maybe 7</think>The answer is 5.")
    assert (split.thinking, split.answer, split.finished) == ("maybe 7", "The answer is 5.", True)
    opened = ThinkingReader(parser, opened=True).split("maybe 7</think>The answer is 5.")
    assert (opened.thinking, opened.answer) == ("maybe 7", "The answer is 5.")
    cut = ThinkingReader(parser).split("<think>maybe 7")
    assert (cut.answer, cut.finished) == ("", False)


def test_qwen3_parser_with_thinking_disabled_reads_all_as_answer(thinking_tokenizer):
    parser = create_thinking_parser(
        "qwen3", tokenizer=thinking_tokenizer, chat_template_kwargs={"enable_thinking": False}
    )
    split = ThinkingReader(parser).split("The answer is 5.")
    assert (split.thinking, split.answer, split.finished) == ("", "The answer is 5.", True)


def test_vllm_parser_names_are_vllms_and_bad_ones_are_typed_errors(thinking_tokenizer, embedded_model_dir):
    assert {"deepseek_r1", "qwen3", "openai_gptoss"} <= set(vllm_parser_names())
    with pytest.raises(UnknownNameError, match="reasoning parser"):
        create_thinking_parser("no_such_family", tokenizer=thinking_tokenizer)
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(str(embedded_model_dir))  # no <think> token in its vocabulary
    with pytest.raises(InvalidParameterError, match="reasoning_parser"):
        create_thinking_parser("deepseek_r1", tokenizer=plain)
