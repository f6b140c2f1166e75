"""Finding, in one pass, the conversation each record of a session continues.

A record continues a conversation's last turn when it names it (``continued_from``), when its
messages are that turn's messages plus its answer plus more, or when its prompt starts with that
turn's exact tokens (prompt + sampled answer). Rather than comparing each record with every
conversation so far (quadratic in the session's length), the last turns are indexed by a hash
of their messages + answer and by a hash of their tokens; a record looks up its own message
prefixes (one per assistant message it holds) and token prefixes (one rolling hash over its
prompt), and only the few conversations found there are checked exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from llm_tts.sessions.records import SessionRecord
from llm_tts.sessions.turns import message_key, message_text

_BASE = 1_000_003
_MASK = (1 << 61) - 1


def _token_hashes(tokens: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(length, rolling hash of tokens[:length]) for every length from 1."""
    h = 0
    for i, t in enumerate(tokens):
        h = (h * _BASE + t + 1) & _MASK
        yield i + 1, h


def _token_key(tokens: Sequence[int]) -> tuple[int, int]:
    h = 0
    for t in tokens:
        h = (h * _BASE + t + 1) & _MASK
    return len(tokens), h


def _messages_keys(messages: Sequence[dict[str, Any]]) -> Iterator[tuple[int, int]]:
    """(k, key of messages[:k] + the assistant message at k) for every assistant message."""
    chained = 0
    for k, message in enumerate(messages):
        if message.get("role") == "assistant":
            yield k, hash((chained, "assistant", message_text(message.get("content")).strip()))
        chained = hash((chained, message_key(message)))


def _answered_key(record: SessionRecord) -> int:
    """The key a later request's messages have when they extend this record's by its answer."""
    chained = 0
    for message in record.messages:
        chained = hash((chained, message_key(message)))
    return hash((chained, "assistant", record.answer_text.strip()))


class ConversationIndex:
    """Conversations (lists of records) and an index of their last turns."""

    def __init__(self, continues: Callable[[SessionRecord, SessionRecord], bool]) -> None:
        self._continues = continues
        self.chains: list[list[SessionRecord]] = []
        self._by_id: dict[str, int] = {}
        self._by_messages: dict[int, set[int]] = defaultdict(set)
        self._by_tokens: dict[tuple[int, int], set[int]] = defaultdict(set)
        self._lengths: set[int] = set()  # token lengths of indexed last turns
        self._longest = 0

    def add(self, record: SessionRecord) -> None:
        """Append ``record`` to the latest conversation whose last turn it continues, else start one."""
        home = next((c for c in sorted(self._candidates(record), reverse=True) if self._fits(c, record)), None)
        if home is None:
            home = len(self.chains)
            self.chains.append([record])
        else:
            self._unindex(home, self.chains[home][-1])
            self.chains[home].append(record)
        self._index(home, record)

    def _fits(self, chain: int, record: SessionRecord) -> bool:
        return self._continues(self.chains[chain][-1], record)

    def _candidates(self, record: SessionRecord) -> set[int]:
        found: set[int] = set()
        if record.continued_from is not None and record.continued_from in self._by_id:
            found.add(self._by_id[record.continued_from])
        for _, key in _messages_keys(record.messages):
            found |= self._by_messages.get(key, set())
        if self._lengths:
            for length, h in _token_hashes(record.prompt_token_ids[: self._longest]):
                if length in self._lengths:
                    found |= self._by_tokens.get((length, h), set())
        return found

    def _keys(self, record: SessionRecord) -> tuple[int, tuple[int, int]]:
        return _answered_key(record), _token_key([*record.prompt_token_ids, *record.chosen.token_ids])

    def _index(self, chain: int, record: SessionRecord) -> None:
        if record.status == "aborted":
            return  # it never answered: nothing continues it
        self._by_id[record.id] = chain
        by_messages, by_tokens = self._keys(record)
        self._by_messages[by_messages].add(chain)
        self._by_tokens[by_tokens].add(chain)
        self._lengths.add(by_tokens[0])
        self._longest = max(self._longest, by_tokens[0])

    def _unindex(self, chain: int, record: SessionRecord) -> None:
        if record.status == "aborted":
            return
        self._by_id.pop(record.id, None)
        by_messages, by_tokens = self._keys(record)
        self._by_messages[by_messages].discard(chain)
        self._by_tokens[by_tokens].discard(chain)
        if not self._by_tokens[by_tokens]:
            del self._by_tokens[by_tokens]  # lengths may keep a stale entry: a lookup then finds nothing
