"""One run's view of thinking: the family's parser, and whether the prompt opened the thinking."""

from __future__ import annotations

from dataclasses import dataclass

from llm_tts.reasoning.parsers import ThinkingParser, ThinkingSplit

PROMPT_TAIL_TOKENS = 64  # a template opens the thinking at the very end of the prompt


@dataclass(frozen=True)
class ThinkingReader:
    """Splits a run's completions into thinking and answer, the same way everywhere.

    ``opened``: the rendered prompt ends inside a thinking span (a template that writes the begin
    marker itself, as DeepSeek-R1's and Qwen3.5's do), so completions start inside their thinking.
    """

    parser: ThinkingParser
    opened: bool = False

    @property
    def end_marker(self) -> str | None:
        return self.parser.end_marker

    def split(self, text: str) -> ThinkingSplit:
        return self.parser.split(text, opened=self.opened)

    def with_prompt(self, prompt_tail: str) -> ThinkingReader:
        """This reader for a prompt whose decoded end is ``prompt_tail``."""
        return ThinkingReader(self.parser, prompt_opens_thinking(prompt_tail, self.parser))


def prompt_opens_thinking(prompt_tail: str, parser: ThinkingParser) -> bool:
    """True when the prompt's last begin marker is not closed by an end marker after it."""
    begin, end = parser.begin_marker, parser.end_marker
    if not begin:
        return False
    opened_at = prompt_tail.rfind(begin)
    return opened_at >= 0 and (not end or prompt_tail.rfind(end) < opened_at)
