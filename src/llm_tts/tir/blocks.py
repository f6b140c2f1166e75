"""Code blocks in a model's text and the text injected after them (tags, truncation, notes).

With the default tags a model writes ``<tool_call>\\ncode\\n</tool_call>``; generation stops at
the closing tag, the code runs, and what the model sees next is the output block
``\\n<tool_output>\\n...\\n</tool_output>\\n`` (cut past ``max_code_output_characters`` with a
visible marker), optionally followed by how many executions are left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm_tts.config import TTSConfig
from llm_tts.sandbox import ExecutionResult

# Statuses whose block a replay re-runs to rebuild the trajectory's state: it ran to its end or
# raised part way (a notebook keeps what ran before the error). Timeouts and kills are not
# replayed (they would time out again), nor blocks refused by max_code_executions.
REPLAYED_STATUSES = ("ok", "error")
REFUSED_STATUS: Literal["limit"] = "limit"  # a block written after max_code_executions: shown a note, not run


@dataclass(frozen=True)
class CodeExecutionSettings:
    """The code-execution fields of a request."""

    max_executions: int
    timeout: float
    max_output_chars: int
    add_remaining: bool
    code_begin: str
    code_end: str
    output_begin: str
    output_end: str

    @classmethod
    def from_config(cls, c: TTSConfig) -> CodeExecutionSettings:
        return cls(
            c.max_code_executions,
            c.code_execution_timeout,
            c.max_code_output_characters,
            c.add_remaining_code_executions,
            c.code_begin,
            c.code_end,
            c.code_output_begin,
            c.code_output_end,
        )

    def closes_block(self, text: str) -> bool:
        """``text`` ends with the closing tag (a stop string may end inside a longer token)."""
        i = text.rfind(self.code_end)
        return i >= 0 and not text[i + len(self.code_end) :].strip()

    def pending_code(self, text: str) -> str | None:
        """The code of the block ``text`` closes: between the last opening tag and the closing
        tag; None when the closing tag has no opening tag before it."""
        end = text.rfind(self.code_end)
        begin = text.rfind(self.code_begin, 0, end) if end >= 0 else -1
        if begin < 0:
            return None
        return text[begin + len(self.code_begin) : end].strip("\n")

    def closed_blocks(self, text: str) -> list[str]:
        """The code of every complete block in ``text``, in order."""
        blocks, at = [], 0
        while (begin := text.find(self.code_begin, at)) >= 0:
            end = text.find(self.code_end, begin + len(self.code_begin))
            if end < 0:
                break
            blocks.append(text[begin + len(self.code_begin) : end].strip("\n"))
            at = end + len(self.code_end)
        return blocks

    def in_open_block(self, text: str) -> bool:
        """An opening tag after the last closing tag: the model is writing code."""
        return text.rfind(self.code_begin) > text.rfind(self.code_end)

    def shown_output(self, result: ExecutionResult) -> str:
        """The block's output as the model sees it: cut past ``max_output_chars`` with a marker."""
        out = result.output
        if len(out) > self.max_output_chars:
            cut = len(out) - self.max_output_chars
            out = out[: self.max_output_chars] + f"\n[output truncated: {cut} more characters not shown]"
        return out

    def output_block(self, result: ExecutionResult, remaining: int) -> str:
        """What the model sees after a block that ran."""
        out = self.shown_output(result)
        note = {
            "ok": "",
            "error": "",
            "timeout": f"[execution timed out after {self.timeout:g} s and was stopped]",
            "killed": "[execution was killed: it exceeded a resource limit of the sandbox]",
        }[result.status]
        if result.output_capped:
            note = "[execution was stopped: it wrote too much output]"
        body = "\n".join(p for p in (out.rstrip("\n"), note) if p)
        return self._wrap(body) + self._remaining(remaining)

    def refused_block(self) -> str:
        """What the model sees after a block written once no execution is left."""
        body = f"Code execution limit reached ({self.max_executions}); this block was not run. Continue without code."
        return self._wrap(body)

    def _wrap(self, body: str) -> str:
        return (
            f"\n{self.output_begin}\n{body}\n{self.output_end}\n"
            if body
            else f"\n{self.output_begin}\n{self.output_end}\n"
        )

    def _remaining(self, remaining: int) -> str:
        if not self.add_remaining:
            return ""
        if remaining <= 0:
            return "You have no code executions left. Continue without code.\n"
        return f"You have {remaining} code execution{'s' if remaining != 1 else ''} left.\n"
