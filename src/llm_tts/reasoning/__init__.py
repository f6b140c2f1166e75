"""Reasoning models: a completion's thinking kept apart from its answer (parsers, the per-run reader)."""

from llm_tts.reasoning.accounting import reasoning_token_count, thinking_token_mask
from llm_tts.reasoning.budget import BudgetForcing
from llm_tts.reasoning.parsers import (
    NO_THINKING,
    TAGS,
    THINK_BEGIN,
    THINK_END,
    AnswerOnlyParser,
    TagThinkingParser,
    ThinkingParser,
    ThinkingSplit,
    VLLMThinkingParser,
    create_thinking_parser,
    parser_names,
    vllm_parser_names,
)
from llm_tts.reasoning.reader import PROMPT_TAIL_TOKENS, ThinkingReader, prompt_opens_thinking

__all__ = [
    "NO_THINKING",
    "PROMPT_TAIL_TOKENS",
    "TAGS",
    "THINK_BEGIN",
    "THINK_END",
    "AnswerOnlyParser",
    "BudgetForcing",
    "TagThinkingParser",
    "ThinkingParser",
    "ThinkingReader",
    "ThinkingSplit",
    "VLLMThinkingParser",
    "create_thinking_parser",
    "parser_names",
    "prompt_opens_thinking",
    "reasoning_token_count",
    "thinking_token_mask",
    "vllm_parser_names",
]
