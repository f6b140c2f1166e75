"""Thinking parsers: where a completion's thinking ends and its answer begins.

A reasoning model writes its thinking first (``<think>`` ... ``</think>`` for most families) and
its answer after it. A parser splits a completion's text into the two, by the rules of the
model's family. Where vLLM is installed its parsers are used by the names ``vllm serve
--reasoning-parser`` takes (``deepseek_r1``, ``qwen3``, ``openai_gptoss``, ...), so family rules
are not written twice; :class:`TagThinkingParser` is the built-in rule for begin/end markers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from llm_tts.errors import CapabilityError, InvalidParameterError, UnknownNameError

TAGS = "tags"  # the built-in tag parser (reasoning_begin / reasoning_end)
NO_THINKING = "none"  # the completion is all answer (a model that does not think)
THINK_BEGIN, THINK_END = "<think>", "</think>"  # the tag parser's default markers
ALIASES = {"gpt_oss": "openai_gptoss"}  # the family's common name for vLLM's registered one


@dataclass(frozen=True, slots=True)
class ThinkingSplit:
    """A completion's text split in two: ``text[:answer_start]`` holds the thinking (with its
    markers), ``text[answer_start:]`` is the answer. ``finished`` is False when the text ends
    inside its thinking: it has no answer."""

    thinking: str  # the thinking, without its markers
    answer: str
    answer_start: int  # character offset of the answer in the completion text
    finished: bool = True

    @property
    def has_thinking(self) -> bool:
        return self.answer_start > 0 or not self.finished


class ThinkingParser(Protocol):
    """Splits a completion's text into thinking and answer."""

    name: str

    @property
    def end_marker(self) -> str | None:
        """The text that ends the thinking (what budget forcing injects); None if the family has none."""
        ...

    @property
    def begin_marker(self) -> str | None: ...

    def split(self, text: str, *, opened: bool) -> ThinkingSplit:
        """Split ``text``; ``opened``: the prompt opened the thinking, so the text starts inside it."""
        ...


class TagThinkingParser:
    """Thinking between a begin and an end marker (``<think>`` / ``</think>`` by default).

    A completion that starts with the begin marker (leading whitespace aside), or whose prompt
    opened the thinking, is thinking up to the first end marker; any other completion is all answer.
    """

    name = TAGS

    def __init__(self, begin: str = THINK_BEGIN, end: str = THINK_END) -> None:
        if not begin or not end:
            raise InvalidParameterError("reasoning_end" if not end else "reasoning_begin", "", "must not be empty")
        self._begin, self._end = begin, end

    @property
    def begin_marker(self) -> str:
        return self._begin

    @property
    def end_marker(self) -> str:
        return self._end

    def split(self, text: str, *, opened: bool) -> ThinkingSplit:
        start = 0
        if not opened:
            stripped = text.lstrip()
            if not stripped.startswith(self._begin):
                return ThinkingSplit("", text, 0)
            start = len(text) - len(stripped) + len(self._begin)
        end = text.find(self._end, start)
        if end < 0:
            return ThinkingSplit(text[start:], "", len(text), finished=False)
        answer_start = end + len(self._end)
        return ThinkingSplit(text[start:end], text[answer_start:], answer_start)


class AnswerOnlyParser:
    """For models that do not think: the whole completion is the answer."""

    name = NO_THINKING
    begin_marker = None
    end_marker = None

    def split(self, text: str, *, opened: bool) -> ThinkingSplit:
        return ThinkingSplit("", text, 0)


class VLLMThinkingParser:
    """One of vLLM's reasoning parsers (``vllm.reasoning``), by its ``--reasoning-parser`` name.

    Uses only what vLLM 0.20 and 0.32 both have: ``ReasoningParserManager.get_reasoning_parser``,
    the parser's constructor (tokenizer, ``chat_template_kwargs``), ``extract_reasoning`` and the
    ``reasoning_start_str`` / ``reasoning_end_str`` properties.
    """

    def __init__(self, name: str, tokenizer: Any, chat_template_kwargs: Mapping[str, Any] | None = None) -> None:
        from vllm.reasoning import ReasoningParserManager

        self.name = name
        try:
            cls = ReasoningParserManager.get_reasoning_parser(name)
        except KeyError:
            raise UnknownNameError("reasoning parser", name, vllm_parser_names(), param="reasoning_parser") from None
        if tokenizer is None:
            raise CapabilityError(
                f"reasoning_parser={name!r}: vLLM's parsers need the model's tokenizer, which this backend does not "
                "have here; use reasoning_parser='tags' with reasoning_begin / reasoning_end"
            )
        try:
            self._parser = cls(tokenizer, chat_template_kwargs=dict(chat_template_kwargs or {}))
        except (RuntimeError, ValueError, KeyError) as e:
            raise InvalidParameterError(
                "reasoning_parser", name, f"does not fit this model's tokenizer ({e}); use reasoning_parser='tags'"
            ) from None
        self._kwargs = dict(chat_template_kwargs or {})

    @property
    def begin_marker(self) -> str | None:
        return _marker(self._parser, "reasoning_start_str")

    @property
    def end_marker(self) -> str | None:
        return _marker(self._parser, "reasoning_end_str")

    def split(self, text: str, *, opened: bool) -> ThinkingSplit:
        begin, end = self.begin_marker, self.end_marker
        # A parser that expects its begin marker in the output gets it back (it was in the prompt).
        prefix = begin if opened and begin and not text.lstrip().startswith(begin) else ""
        # The request is read by no parser that splits a finished text (vLLM passes it for its own use).
        reasoning, content = self._parser.extract_reasoning(prefix + text, None)  # type: ignore[arg-type]
        content = content or ""
        if not reasoning and content.strip() == text.strip():
            return ThinkingSplit("", text, 0)
        answer_start = len(text) - len(content) if text.endswith(content) else max(0, text.rfind(content))
        finished = bool(content) or end is None or end in text
        return ThinkingSplit(
            reasoning or "", content if finished else "", answer_start if finished else len(text), finished
        )


def _marker(parser: Any, attribute: str) -> str | None:
    try:
        value = getattr(parser, attribute)
    except (AttributeError, NotImplementedError):
        return None
    return value if isinstance(value, str) and value else None


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_parser_names() -> list[str]:
    """The names vLLM's ``--reasoning-parser`` takes here (empty without vLLM)."""
    if not vllm_available():
        return []
    from vllm.reasoning import ReasoningParserManager

    return sorted(ReasoningParserManager.list_registered())


def parser_names() -> list[str]:
    return sorted({TAGS, NO_THINKING, *vllm_parser_names()})


def create_thinking_parser(
    name: str,
    *,
    begin: str = "<think>",
    end: str = "</think>",
    tokenizer: Any = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> ThinkingParser:
    """The parser ``name`` names: ``tags`` (built in), ``none``, or one of vLLM's parsers."""
    if name == TAGS:
        return TagThinkingParser(begin, end)
    if name == NO_THINKING:
        return AnswerOnlyParser()
    if not vllm_available():
        raise UnknownNameError("reasoning parser", name, [TAGS, NO_THINKING], param="reasoning_parser")
    return VLLMThinkingParser(ALIASES.get(name, name), tokenizer, chat_template_kwargs)
