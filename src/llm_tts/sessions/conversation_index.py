"""Finding, in one pass, the turn each record of a session continues.

A record continues a turn when it names it (``continued_from``), when its messages are that
turn's messages plus its answer plus more, or when its prompt starts with that turn's exact
tokens (prompt + sampled answer). Rather than comparing each record with every earlier one
(quadratic in the session's length), answered turns are indexed by a hash of their messages +
answer and by a hash of their tokens; a record looks up its own message prefixes (one per
assistant message it holds) and token prefixes (one rolling hash over its prompt), and only the
few turns found there are checked exactly. The result is a forest of turns: a branch where two
records continue the same turn.
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
    """The session's records as a forest: each record's parent is the turn it continues. A record
    continues the last turn of a conversation when it can (the latest conversation first, as an
    agent's next turn does), else an earlier turn (the latest first): a branch, as when an agent
    retries from an earlier turn or a search fans out."""

    def __init__(self, continues: Callable[[SessionRecord, SessionRecord], bool]) -> None:
        self._continues = continues
        self.records: list[SessionRecord] = []
        self.parent: list[int | None] = []
        self.root: list[int] = []
        self.children: list[list[int]] = []
        self._by_id: dict[str, int] = {}
        self._by_messages: dict[int, list[int]] = defaultdict(list)
        self._by_tokens: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._lengths: set[int] = set()  # token lengths of indexed turns
        self._longest = 0

    def add(self, record: SessionRecord) -> None:
        found = self._candidates(record)
        leaves = sorted((i for i in found if not self.children[i]), key=lambda i: (self.root[i], i), reverse=True)
        inner = sorted((i for i in found if self.children[i]), reverse=True)
        parent = next((i for i in (*leaves, *inner) if self._continues(self.records[i], record)), None)
        node = len(self.records)
        self.records.append(record)
        self.parent.append(parent)
        self.root.append(node if parent is None else self.root[parent])
        self.children.append([])
        if parent is not None:
            self.children[parent].append(node)
        self._index(node, record)

    def paths(self) -> list[list[SessionRecord]]:
        """Every root-to-leaf path, by the order of their roots, then of their leaves."""
        leaves = sorted((i for i in range(len(self.records)) if not self.children[i]), key=lambda i: (self.root[i], i))
        out = []
        for leaf in leaves:
            path: list[int] = []
            node: int | None = leaf
            while node is not None:
                path.append(node)
                node = self.parent[node]
            out.append([self.records[i] for i in reversed(path)])
        return out

    def _candidates(self, record: SessionRecord) -> set[int]:
        found: set[int] = set()
        if record.continued_from is not None and record.continued_from in self._by_id:
            found.add(self._by_id[record.continued_from])
        for _, key in _messages_keys(record.messages):
            found.update(self._by_messages.get(key, ()))
        if self._lengths:
            for length, h in _token_hashes(record.prompt_token_ids[: self._longest]):
                if length in self._lengths:
                    found.update(self._by_tokens.get((length, h), ()))
        return found

    def _index(self, node: int, record: SessionRecord) -> None:
        if record.status == "aborted":
            return  # it never answered: nothing continues it
        self._by_id[record.id] = node
        self._by_messages[_answered_key(record)].append(node)
        tokens = _token_key([*record.prompt_token_ids, *record.chosen.token_ids])
        self._by_tokens[tokens].append(node)
        self._lengths.add(tokens[0])
        self._longest = max(self._longest, tokens[0])
