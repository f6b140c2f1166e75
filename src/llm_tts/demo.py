"""The main job: what test-time scaling buys over greedy decoding, on the embedded model.

First one question is answered by greedy decoding and by each strategy, each line printed as
soon as its method finishes. Then every method answers a set of seeded arithmetic questions
("What is 3 + 4?"), all questions at once through one engine (the vLLM backend batches
concurrent requests), and a table shows accuracy, generated tokens per question and each
method's own wall time. Start-up (model conversion, engine start) is reported apart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_tts.messages import REASONING_SYSTEM_PROMPT

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, BaseMessage

    from llm_tts.engine import TTSEngine

MAX_TOKENS = 128  # the questions need a few lines; a rambling path is cut rather than waited for
DEFAULT_QUESTIONS = 24  # about 75 s on 2 CPU cores with vLLM, start-up included


@dataclass(frozen=True)
class Method:
    """A row of the comparison: a title and the ChatTTS fields that make it."""

    title: str
    fields: dict[str, Any]


METHODS: tuple[Method, ...] = (
    Method("greedy decoding", {"tts_strategy": "self_consistency", "num_paths": 1, "temperature": 0.0}),
    Method("self-consistency, 8 paths", {"tts_strategy": "self_consistency", "num_paths": 8}),
    Method(
        "best-of-8, perplexity-weighted vote",
        {
            "tts_strategy": "offline_bon",
            "tts_num_trajectories": 8,
            "tts_scorer": "perplexity",
            "tts_selection": "weighted",
        },
    ),
    Method(
        "beam search 4x2, entropy",
        {
            "tts_strategy": "beam_search",
            "tts_beam_size": 4,
            "tts_candidates_per_step": 2,
            "tts_scorer": "entropy",
            "tts_max_steps": 4,
            "tts_step_max_tokens": 48,
        },
    ),
)


@dataclass(frozen=True)
class Question:
    text: str
    answer: str | None  # None for a question the user typed


def arithmetic_questions(count: int, seed: int = 0, max_operand: int = 9) -> list[Question]:
    """``count`` seeded questions "What is a + b?" / "What is a * b?" with their answers.

    Single-digit operands: SmolLM2-135M gets these partly right, so extra compute has room to
    help (two-digit products it gets almost always wrong, whatever the strategy).
    """
    rng = random.Random(seed)
    questions = []
    for _ in range(count):
        a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
        op = rng.choice("+*")
        questions.append(Question(f"What is {a} {op} {b}?", str(a + b if op == "+" else a * b)))
    return questions


@dataclass
class Row:
    """One method's results: accuracy and tokens over the questions with a known answer."""

    method: Method
    replies: list[AIMessage]
    seconds: float
    correct: int = 0
    tokens: int = 0


def run_demo(
    question: str | None = None,
    *,
    questions: int = DEFAULT_QUESTIONS,
    seed: int = 0,
    backend: str = "auto",
    model: str | None = None,
) -> int:
    """Run the comparison, printing each method's line as it finishes, then the table."""
    from llm_tts.engine import TTSEngine
    from llm_tts.models import display_name

    qs = arithmetic_questions(questions, seed)
    if question:
        qs.insert(0, Question(question, None))
    if not qs:
        qs = arithmetic_questions(1, seed)
    graded = sum(q.answer is not None for q in qs)
    started = time.perf_counter()
    _say(f"llm-tts demo: greedy decoding vs test-time scaling on {display_name(model)}")
    engine = TTSEngine.create(model, backend)  # converts the model once and starts the engine (progress on stderr)
    try:
        _say(f"start-up: {time.perf_counter() - started:.1f} s ({engine.backend.name} backend), not counted below")
        asked = f"{graded} arithmetic questions (seed {seed})" if graded else "1 question"
        _say(
            f"{'your question and ' if question and graded else ''}{asked}, all at once through one engine; "
            f"each method's answer to the first:\n"
        )
        rows = []
        for method in METHODS:
            row = _run(engine, method, qs)
            rows.append(row)
            _say(f"  {method.title:36} {_describe(row.replies[0], qs[0])}; all {len(qs)} in {row.seconds:.1f} s")
        if graded:
            _say(f"\naccuracy on the {graded} generated questions:")
            _table(rows, graded)
    finally:
        engine.close()
    return 0


def _say(line: str = "") -> None:
    print(line, flush=True)  # flushed: each line shows as its method finishes, even through a pipe


def _run(engine: TTSEngine, method: Method, questions: Sequence[Question]) -> Row:
    from llm_tts.integrations import ChatTTS

    chat = ChatTTS(engine=engine, max_tokens=MAX_TOKENS, **method.fields)
    start = time.perf_counter()
    replies = chat.batch([_messages(q) for q in questions], config={"max_concurrency": len(questions)})
    row = Row(method, replies, time.perf_counter() - start)
    for q, msg in zip(questions, replies):
        if q.answer is not None:
            md = msg.response_metadata["tts_metadata"]
            row.correct += _is_right(md["selected_answer"], q)
            row.tokens += md["usage"]["completion_tokens"]
    return row


def _messages(question: Question) -> list[BaseMessage]:
    from langchain_core.messages import HumanMessage, SystemMessage

    return [SystemMessage(REASONING_SYSTEM_PROMPT), HumanMessage(question.text)]


def _describe(msg: AIMessage, question: Question) -> str:
    """The method's answer to the first question, its votes and tokens."""
    md = msg.response_metadata["tts_metadata"]
    answer = md["selected_answer"]
    verdict = "" if question.answer is None else (" (right)" if _is_right(answer, question) else " (wrong)")
    parts = [f"{question.text} -> {answer if answer is not None else 'no answer'}{verdict}"]
    votes = md.get("answer_distribution")
    if votes and len(md["candidates"]) > 1:
        top = sorted(votes.items(), key=lambda kv: (kv[0] != answer, -kv[1]))[:3]  # the winner first
        parts.append("votes " + " ".join(f"{a}:{n}" for a, n in top))
    parts.append(f"{md['usage']['completion_tokens']} tokens")
    return ", ".join(parts)


def _is_right(answer: str | None, question: Question) -> bool:
    from llm_tts.answers import answers_equivalent

    return answer is not None and question.answer is not None and answers_equivalent(answer, question.answer)


def _table(rows: Sequence[Row], graded: int) -> None:
    greedy_tokens = rows[0].tokens or 1
    _say(f"  {'method':36} {'accuracy':>12} {'tokens/question':>16} {'x greedy':>9} {'time':>8}")
    for r in rows:
        accuracy = f"{r.correct}/{graded} {r.correct / graded:4.0%}"
        _say(
            f"  {r.method.title:36} {accuracy:>12} {r.tokens / graded:16.0f} {r.tokens / greedy_tokens:9.1f} {r.seconds:7.1f}s"
        )
