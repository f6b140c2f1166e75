"""Final-answer extraction and voting by mathematical equivalence.

An answer is a value, never a sentence. Extraction order (the first rule that finds something wins):

1. the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces matched; a box holding an
   equation gives its right-hand side (``\\boxed{9 * 7 = 63}`` -> ``63``);
2. the last "answer is X" / "answer: X" phrase (also "final answer"), up to the end of its
   sentence: X is the value it states (the right-hand side of an equation in it, a number or
   expression with its units dropped, or a short word answer such as "Paris"). A phrase that
   states no value ("the answer is reached by adding 115 to ...") means no answer at all; a
   verdict ("the answer is correct") is no answer phrase and the next rule applies;
3. the right-hand side of the last equation, even when other numbers follow it in prose
   ("6 + 4 = 10. This is the sum of 6 and 4" -> ``10``; ``x = \\frac{3}{4}`` -> ``\\frac{3}{4}``);
4. the last number in the text (``-12``, ``3,000``, ``0.5``, ``1/2``).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_MATH_CHARS = 64  # longer answers are compared as strings: sympy work grows with size
MAX_WORD_ANSWER_WORDS = 3  # "Paris", "New York City": longer prose is a clause, not a value
_MAX_DIGITS = 30  # a literal longer than this is not worth a symbolic comparison

# The "timeout disabled" warning is expected: we bound the input instead (see module doc).
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).setLevel(logging.ERROR)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_LONG_LITERAL = re.compile(rf"\d{{{_MAX_DIGITS + 1},}}")
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
# The end of a sentence: a period before a space or the end, a newline, "?" or "!".
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n|[?!](?=\s|$)")
# "=" but not "<=", ">=", "!=", "==" parts; the last one splits an equation.
_EQUALS = re.compile(r"(?<![<>!=])=(?!=)")
# In a clause, the value it ends on: "..., which is 105", "... equals 63", "... to get 12".
_CLAUSE_VERB = re.compile(r"\b(?:is|equals|gives|gets?|makes)\s+", re.IGNORECASE)
# Characters of a value outside braces: digits, operators, brackets, LaTeX escapes.
_VALUE_CHARS = set("0123456789.+-*/^()[]|%,:' \\_")
# Words before a value that do not change it: "the answer is simply 28".
_FILLER = re.compile(
    r"^(?:(?:simply|just|then|thus|therefore|so|exactly|clearly|now|equal to|given by)\s+)+", re.IGNORECASE
)
# After a value, a remark set apart by punctuation: "105, since 15 * 7 = 105", "5 (not 6)".
_REMARK = re.compile(r"^(?:[,;(]|--|\u2014)")
_UNIT = re.compile(r"\s*(?:[A-Za-z]+\.?|\\text\s*\{[^{}]*\}|%|\$)(?:\s+[A-Za-z]+)*\s*$")
# "The answer is correct." judges an answer, it does not give one.
_VERDICT_WORDS = frozenset({"correct", "incorrect", "wrong", "right", "below", "above", "as follows", "the following"})
_UNICODE_MATH = str.maketrans({"\u2212": "-", "\u00d7": "*", "\u00f7": "/", "\u22c5": "*", "\u00b7": "*"})


def extract_answer(text: str) -> str | None:
    """The final answer of ``text`` by the rules in the module doc, or None."""
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    phrased, stated = _phrase(text)
    if stated:
        return phrased
    return _final_equation(text) or _last_number(text)


def has_final_answer(text: str) -> bool:
    """True when the text states an answer explicitly (boxed or phrased), not just a number."""
    return _boxed(text) is not None or _phrase(text)[0] is not None


def _boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                inner = _EMPTY_BOX.sub("", text[start:i]).strip()  # a template's empty box is no answer
                if inner:
                    return _right_hand_side(inner)
                break
    return None


def _phrase(text: str) -> tuple[str | None, bool]:
    """(value, stated): the value of the last answer phrase; stated is False when there is
    no answer phrase or it is a verdict, True when the text states an answer (maybe no value)."""
    matches = list(_PHRASE.finditer(text))
    if not matches:
        return None, False
    rest = _EMPTY_BOX.sub("", matches[-1].group(1)).strip()
    sentence = _first_sentence(rest)
    bare = sentence.strip().strip("*").strip().rstrip(".").strip().strip("$").strip()
    if not bare or bare.lower() in _VERDICT_WORDS:
        return None, False
    return _value(sentence), True


def _first_sentence(text: str) -> str:
    """Up to the first sentence end that is not inside braces or a number (3.5)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth <= 0 and _SENTENCE_END.match(text, i):
            return text[:i]
    return text


def _right_hand_side(expr: str) -> str:
    """The right-hand side of the last top-level "=" in ``expr`` (``expr`` itself without one)."""
    depth, last = 0, -1
    for i, ch in enumerate(expr):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0 and _EQUALS.match(expr, i):
            last = i
    rhs = expr[last + 1 :].strip() if last >= 0 else expr.strip()
    return rhs or expr.strip()


def _value(sentence: str) -> str | None:
    """The value a sentence states, or None when it is a clause rather than a value."""
    s = sentence.translate(_UNICODE_MATH).strip().strip("*").strip()
    s = re.sub(r"^\\[(\[]|\\[)\]]$", "", s).strip()  # \( ... \) and \[ ... \]
    s = _right_hand_side(s).strip().strip("*").strip()
    s = _FILLER.sub("", s.rstrip(".,;:!?").strip().strip("$").strip())
    if not s or s.count("{") > s.count("}"):
        return None  # nothing, or cut off inside braces ("The answer is \\boxed{" at max_tokens)
    expr, rest = _leading_expression(s)
    if expr and (not rest or _UNIT.fullmatch(rest) or _REMARK.match(rest)):  # "63", "63 apples", "5, not 6"
        return expr
    if not re.search(r"\d", s) and len(s.split()) <= MAX_WORD_ANSWER_WORDS and not expr:
        return s  # a word answer: "Paris", "B", "True"
    verbs = list(_CLAUSE_VERB.finditer(s))  # "15 multiplied by 7, which is 105": the value it ends on
    if verbs and verbs[-1].end() < len(s):
        return _value(s[verbs[-1].end() :])
    return None


def _leading_expression(s: str) -> tuple[str, str]:
    """Split ``s`` into a leading mathematical expression and the rest ("63 apples" -> "63", "apples")."""
    i, braces, end = 0, 0, 0
    open_parens: list[int] = []  # where each unclosed "(" of the expression starts
    while i < len(s):
        ch = s[i]
        if ch == "{":
            braces += 1
        elif ch == "}":
            braces -= 1
            if braces < 0:
                break
        elif braces == 0:
            if ch == "\\":
                cmd = re.match(r"\\(?:[a-zA-Z]+|.)", s[i:])
                if _TEXT_CMD.match(s, i):
                    break  # \text{ apples}: units, not part of the value
                i += len(cmd.group(0)) if cmd else 1
                end = i
                continue
            if ch.isalpha():
                # a single-letter variable (x, n) or a constant, not the start of a word
                if (i + 1 < len(s) and s[i + 1].isalpha()) or (i > 0 and s[i - 1].isalpha()):
                    break
            elif ch == "," and not open_parens:
                if not (i + 1 < len(s) and s[i + 1].isdigit() and i > 0 and s[i - 1].isdigit()):
                    break  # "5, not 6": a list or a clause; "3,000" is a number
            elif ch == "(":
                open_parens.append(i)
            elif ch == ")" and open_parens:
                open_parens.pop()
            elif ch not in _VALUE_CHARS:
                break
        i += 1
        if not s[i - 1].isspace():
            end = i
    if open_parens:  # "14 (seven plus seven)": the value ends before the remark opens
        end = open_parens[0]
    expr = s[:end].strip()
    if braces != 0 or not (re.search(r"[\d\\]", expr) or re.fullmatch(r"[A-Za-z]", expr)):
        return "", s  # no digit, no LaTeX, no single variable: not a mathematical value
    return expr, s[end:].strip()


def _final_equation(text: str) -> str | None:
    """The value on the right-hand side of the last equation, if it is one."""
    equals = list(_EQUALS.finditer(text))
    if not equals:
        return None
    return _value(_first_sentence(text[equals[-1].end() :].lstrip()))


def _last_number(text: str) -> str | None:
    found = _NUMBER.findall(text.translate(_UNICODE_MATH))
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

    parsed = parse(f"${s}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None)
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


def group_answers(
    answers: Sequence[str | None], equivalent: Callable[[str, str], bool] | None = None
) -> list[AnswerGroup]:
    """Group equal answers in order of first appearance; None (no answer) joins no group.
    ``equivalent`` defaults to :func:`answers_equivalent` (structured outputs pass exact equality)."""
    same = equivalent or answers_equivalent
    groups: list[AnswerGroup] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        group = next((g for g in groups if same(g.answer, a)), None)
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


def vote(
    answers: Sequence[str | None],
    scores: Sequence[float | None],
    *,
    weighted: bool = False,
    equivalent: Callable[[str, str], bool] | None = None,
) -> Vote:
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
    groups = group_answers(answers, equivalent)
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
