"""Constrained decoding for the transformers backend: an xgrammar token mask per sampled row.

xgrammar (the grammar engine vLLM uses) compiles a :class:`DecodingConstraint` against the
tokenizer once (cached per constraint); each decoding step, every row's matcher writes the set
of tokens that keep the text inside the grammar into a bitmask, the disallowed logits are set to
-inf, and the sampled tokens are fed back to the matchers. Once a row's text is complete only the
stop tokens (the model's end-of-turn) remain allowed, so a finished object ends the sample.

Logprobs reported for a constrained sample are the model's raw ones, read before the mask, as
vLLM reports them (``logprobs_mode="raw_logprobs"``), so scorers see the same numbers on both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from llm_tts.backends.constraints import DecodingConstraint, schema_of
from llm_tts.errors import InvalidParameterError

_JSON_OBJECT_SCHEMA = {"type": "object"}  # json_object: any JSON object, as OpenAI's json mode means


class GrammarCompiler:
    """Compiles constraints for one tokenizer; thread-safe, with a cache per constraint."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, stop_token_ids: Iterable[int]) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(
            hf_tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_token_ids)
        )
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=2)
        self._cache: dict[DecodingConstraint, Any] = {}
        self._lock = threading.Lock()

    def compile(self, constraint: DecodingConstraint) -> Any:
        """The compiled grammar; a constraint xgrammar cannot read is an InvalidParameterError."""
        with self._lock:
            if constraint not in self._cache:
                self._cache[constraint] = self._compile(constraint)
            return self._cache[constraint]

    def _compile(self, c: DecodingConstraint) -> Any:
        try:
            if c.kind == "json_schema":
                return self._compiler.compile_json_schema(schema_of(c), any_whitespace=False)
            if c.kind == "json_object":
                return self._compiler.compile_json_schema(_JSON_OBJECT_SCHEMA, any_whitespace=False)
            if c.kind == "regex":
                return self._compiler.compile_regex(c.spec)
            return self._compiler.compile_grammar(c.spec)
        except InvalidParameterError:
            raise
        except (RuntimeError, ValueError) as e:  # xgrammar names what its parser cannot read
            raise InvalidParameterError(f"constraint.{c.kind}", c.spec[:120], f"cannot be compiled: {e}") from None

    def masks(self, constraint: DecodingConstraint, rows: int) -> RowMasks:
        return RowMasks(self.compile(constraint), rows, self.vocab_size)


class RowMasks:
    """One matcher per row of a decoding loop; rows are the loop's row ids (stable while the
    batch shrinks as rows finish)."""

    def __init__(self, compiled: Any, rows: int, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.vocab_size = vocab_size
        self.matchers = [xgr.GrammarMatcher(compiled) for _ in range(rows)]

    def apply(self, logits: Any, active: Sequence[int]) -> None:
        """Set to -inf, in place, every logit of ``logits`` (one row per active row) the grammar
        does not allow next."""
        bitmask = self._xgr.allocate_token_bitmask(len(active), self.vocab_size)
        for j, r in enumerate(active):
            self.matchers[r].fill_next_token_bitmask(bitmask, j)
        self._xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), vocab_size=self.vocab_size)

    def accept(self, active: Sequence[int], tokens: Sequence[int]) -> None:
        for r, tok in zip(active, tokens):
            matcher = self.matchers[r]
            if not matcher.is_terminated():
                matcher.accept_token(tok)
