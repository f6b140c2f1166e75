"""Final-answer extraction and voting by mathematical equivalence.

Extraction order (the first rule that finds something wins):

1. the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces matched;
2. the last "answer is X" / "answer: X" phrase (also "final answer"), up to the end of its line;
3. the last number in the text (``-12``, ``3,000``, ``0.5``, ``1/2``).

Equivalence: two answers that both look like mathematics are compared with ``math-verify``
(``\\frac{1}{2}`` = ``0.5`` = ``1/2``); anything else is compared as a normalised string
(case, spaces, ``$``, ``\\text{}`` and a trailing period ignored).

math-verify bounds its own work with ``signal.alarm``, which only works on the main thread; the
engine runs in worker threads, so its timeouts are disabled here and the work is bounded up
front instead: only short answers (``MAX_MATH_CHARS``) with at most one power, no factorial and
no huge literal are handed to sympy; the others are compared as strings.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

MAX_MATH_CHARS = 64  # longer answers are compared as strings: sympy work grows with size
_MAX_DIGITS = 30  # a literal longer than this is not worth a symbolic comparison

# The "timeout disabled" warning is expected: we bound the input instead (see module doc).
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).setLevel(logging.ERROR)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_LONG_LITERAL = re.compile(r"\d{%d,}" % (_MAX_DIGITS + 1))
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
# "The answer is correct." judges an answer, it does not give one.
_VERDICT_WORDS = frozenset({"correct", "incorrect", "wrong", "right", "below", "above", "as follows", "the following"})


def extract_answer(text: str) -> str | None:
    """The final answer of ``text`` by the rules in the module doc, or None."""
    return _boxed(text) or _phrase(text) or _last_number(text)


def has_final_answer(text: str) -> bool:
    """True when the text states an answer explicitly (boxed or phrased), not just a number."""
    return bool(_boxed(text) or _phrase(text))


def _boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                inner = _EMPTY_BOX.sub("", text[start:i]).strip()  # a template's empty box is no answer
                if inner:
                    return inner
                break
    return None


def _phrase(text: str) -> str | None:
    matches = list(_PHRASE.finditer(text))
    if not matches:
        return None
    ans = matches[-1].group(1).strip()
    ans = re.split(r"\.\s|\n", ans)[0]
    ans = _EMPTY_BOX.sub("", ans)
    ans = ans.strip().strip("*").strip().rstrip(".").strip().strip("$").strip()
    return ans if ans and ans.lower() not in _VERDICT_WORDS else None


def _last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return re.sub(r"[,\s]", "", found[-1]) if found else None


def normalize(answer: str) -> str:
    """The plain-string form used for non-math answers and as a cache key."""
    s = _TEXT_CMD.sub(r"\1", answer.strip())
    s = s.rstrip(". $").lstrip("$ ")  # not lstrip("."): ".5" is a number
    return re.sub(r"\s+", " ", s).lower()


def _looks_mathematical(s: str) -> bool:
    bare = _LATEX_CMD.sub("", s)
    if _WORD.search(bare):  # words, not symbols: "Paris" must not become a*i*p*r*s
        return False
    return bool(re.search(r"[\d\\]", s) or re.fullmatch(r"[\s\w+\-*/^().=]+", bare))


@lru_cache(maxsize=4096)
def _parsed(answer: str) -> Any:
    """math-verify's parse of a short answer, or None when it is not safe/possible to parse."""
    s = _TEXT_CMD.sub(r"\1", answer.strip()).strip("$").strip()
    if (
        not s
        or len(s) > MAX_MATH_CHARS
        or s.count("^") + s.count("**") > 1
        or "!" in s
        or _LONG_LITERAL.search(s.replace(",", ""))
        or not _looks_mathematical(s)
    ):
        return None
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    parsed = parse(
        f"${s}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None
    )
    return parsed or None


def answers_equivalent(a: str, b: str) -> bool:
    """Mathematical equivalence for math answers, normalised-string equality otherwise."""
    if normalize(a) == normalize(b):
        return True
    pa, pb = _parsed(a), _parsed(b)
    if pa is None or pb is None:
        return False
    from math_verify import verify

    return bool(verify(pa, pb, timeout_seconds=None))


@dataclass
class AnswerGroup:
    """Equivalent answers: ``answer`` is the first form seen, ``members`` their indices."""

    answer: str
    members: list[int] = field(default_factory=list)


def group_answers(answers: Sequence[str | None]) -> list[AnswerGroup]:
    """Group equal answers in order of first appearance; None (no answer) joins no group."""
    groups: list[AnswerGroup] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        group = next((g for g in groups if answers_equivalent(g.answer, a)), None)
        if group is None:
            groups.append(AnswerGroup(a, [i]))
        else:
            group.members.append(i)
    return groups


@dataclass
class Vote:
    """The outcome of a vote over candidates."""

    selected: int  # index of the returned candidate
    answer: str | None  # the winning answer (its first form seen)
    distribution: dict[str, int]  # candidates per equivalent answer
    consensus: float  # winning group's share of ALL candidates (no-answer ones included)
    group_weights: dict[str, float]  # what each group scored in the vote


def vote(answers: Sequence[str | None], scores: Sequence[float | None], *, weighted: bool = False) -> Vote:
    """Pick an answer by majority (or by summed weights) over equivalent answers.

    Majority: the group with most members wins; a tie goes to the group whose best member has
    the higher score (None counts as -inf), then to the group seen first. Weighted
    (weighted best-of-N): the group with the largest sum of member weights wins, where a weight
    is the score itself when every score is >= 0 (probabilities such as PRM rewards), and
    ``exp(score - max score)`` otherwise (log-space scores, where a negative raw sum would
    penalise agreement); ties go to the larger group, then to the one seen first. Within the
    winning group the member with the highest score is returned (the first one on a tie).
    With no answer at all, the best-scoring candidate is returned and consensus is 0.
    """
    if not answers:
        raise ValueError("vote needs at least one candidate")
    if len(scores) != len(answers):
        raise ValueError("vote needs one score per candidate")
    key = [(-math.inf if s is None else s) for s in scores]
    best_in = lambda members: max(members, key=lambda i: (key[i], -i))  # noqa: E731
    groups = group_answers(answers)
    if not groups:
        return Vote(best_in(range(len(answers))), None, {}, 0.0, {})
    weights = _weights(key) if weighted else [1.0] * len(key)
    totals = [sum(weights[i] for i in g.members) for g in groups]

    def rank(j: int) -> tuple:
        g = groups[j]
        if weighted:
            return (totals[j], len(g.members), -j)
        return (len(g.members), key[best_in(g.members)], -j)

    win = groups[max(range(len(groups)), key=rank)]
    return Vote(
        selected=best_in(win.members),
        answer=win.answer,
        distribution={g.answer: len(g.members) for g in groups},
        consensus=len(win.members) / len(answers),
        group_weights={g.answer: t for g, t in zip(groups, totals)},
    )


def _weights(scores: Sequence[float]) -> list[float]:
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [1.0] * len(scores)
    if min(finite) >= 0:
        return [s if math.isfinite(s) else 0.0 for s in scores]
    top = max(finite)
    return [math.exp(s - top) if math.isfinite(s) else 0.0 for s in scores]
