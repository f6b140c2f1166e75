"""The main job: what each test-time scaling method buys over greedy decoding, on the embedded model.

Two seeded question sets, each answered by every method of its section, all questions at once
through one engine (the vLLM backend batches concurrent requests). Each method's row (accuracy,
generated tokens per question, its own wall time) prints as soon as it finishes; a line under
each section says what the methods bought against each other, whatever the numbers are.

1. Reasoning in text, on small questions the model gets partly right: greedy, self-consistency,
   self-consistency with adaptive stopping, and a step search (beam search).
2. Code execution, on 2-3 digit arithmetic the model cannot do in its head: greedy, and
   self-consistency whose paths run their Python in the bubblewrap sandbox; then one worked
   example (the question, the code the model wrote, the sandbox's output, the vote). The
   methods part at once here (none right against nearly all), so this section asks fewer.

Given a question of the user's instead, every method answers that one question and the worked
example shows it. Start-up (model conversion, engine start) is reported apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_tts.demo_questions import Question, big_questions, small_questions
from llm_tts.messages import REASONING_SYSTEM_PROMPT

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, BaseMessage

    from llm_tts.engine import TTSEngine

# Answers to these questions take 20-60 tokens; a path that rambles past this is cut rather
# than waited for (greedy's time is its longest answer: one engine step per token).
MAX_TOKENS = 96
# A code path is a block, its output and a boxed answer: about 45 tokens, the output included.
CODE_MAX_TOKENS = 64
DEFAULT_QUESTIONS = 12  # in the text section
DEFAULT_CODE_QUESTIONS = 8  # in the code section, whose methods part at once (12 made the demo 2 min 3 s)
PATHS = 8
STOP_CONFIDENCE = 0.9


@dataclass(frozen=True)
class Method:
    """A row of a section: a title, the ChatTTS fields that make it, and its prompt."""

    title: str
    fields: dict[str, Any]
    code: bool = False  # the few-shot prompt that teaches the code tags (llm_tts.tir.prompts)
    max_tokens: int = MAX_TOKENS


GREEDY = Method("greedy decoding", {"tts_strategy": "self_consistency", "num_paths": 1, "temperature": 0.0})
SELF_CONSISTENCY = Method(f"self-consistency, {PATHS} paths", {"tts_strategy": "self_consistency", "num_paths": PATHS})
TEXT_METHODS: tuple[Method, ...] = (
    GREEDY,
    SELF_CONSISTENCY,
    Method(
        f"  + adaptive stop at {STOP_CONFIDENCE:.0%}",
        {**SELF_CONSISTENCY.fields, "tts_stop_confidence": STOP_CONFIDENCE},
    ),
    Method(
        "beam search 4x2, entropy",
        {
            "tts_strategy": "beam_search",
            "tts_beam_size": 4,
            "tts_candidates_per_step": 2,
            "tts_scorer": "entropy",
            "tts_max_steps": 4,
            "tts_step_max_tokens": 32,
        },
    ),
)
CODE_METHODS: tuple[Method, ...] = (
    GREEDY,
    Method(
        f"self-consistency {PATHS} + code execution",
        {**SELF_CONSISTENCY.fields, "code_execution": True},
        code=True,
        max_tokens=CODE_MAX_TOKENS,
    ),
)


@dataclass
class Row:
    """One method's results over a question set."""

    method: Method
    replies: list[AIMessage]
    seconds: float
    correct: list[bool] = field(default_factory=list)
    tokens: int = 0


def run_demo(
    question: str | None = None,
    *,
    questions: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    model: str | None = None,
) -> int:
    """Run both sections, printing each method's row as it finishes; or, given ``question``, every
    method on that question. ``questions`` sets both sections' sizes (default 12 and 8)."""
    from llm_tts.engine import TTSEngine
    from llm_tts.models import display_name

    text_count = max(1, questions or DEFAULT_QUESTIONS)
    code_count = max(1, questions or DEFAULT_CODE_QUESTIONS)
    started = time.perf_counter()
    _say(f"llm-tts demo: what test-time scaling buys over greedy decoding, on {display_name(model)}")
    engine = TTSEngine.create(model, backend)  # converts the model once and starts the engine (progress on stderr)
    try:
        small = small_questions(text_count, seed)
        _warm_up(engine, [Question(question, None)] if question else small)
        _say(f"start-up: {time.perf_counter() - started:.1f} s ({engine.backend.name} backend), not counted below")
        if not engine.backend.capabilities.seed:
            _say("(this backend ignores sampling seeds: the sampled methods' numbers vary a little between runs)")
        if question:
            _one_question(engine, Question(question, None))
            _say(f"\ntotal: {time.perf_counter() - started:.1f} s")
            return 0
        _say(f"\n1. reasoning in text: {len(small)} small arithmetic and word questions (seed {seed}), all at once")
        text = _section(engine, TEXT_METHODS, small)
        _compare_text(text)
        big = big_questions(code_count, seed)
        _say(f"\n2. code execution: {len(big)} questions with 2-3 digit numbers (seed {seed}), all at once")
        code = _section(engine, CODE_METHODS, big)
        _compare_code(code)
        _worked_example(code[-1], big)
        _say(f"\ntotal: {time.perf_counter() - started:.1f} s")
    finally:
        engine.close()
    return 0


def _say(line: str = "") -> None:
    print(line, flush=True)  # flushed: each row shows as its method finishes, even through a pipe


def _warm_up(engine: TTSEngine, questions: Sequence[Question]) -> None:
    """One token for each question, all at once: vLLM's first requests after start-up cost seconds
    more than later ones (14 s against 0.08 s for one token on a loaded 2-core machine), which would
    otherwise be charged to greedy decoding, the first row."""
    _run(engine, Method("warm-up", {"num_paths": 1, "temperature": 0.0}, max_tokens=1), questions)


def _one_question(engine: TTSEngine, question: Question) -> None:
    """Every method of both sections on the user's question: its answer, votes, tokens and time."""
    _say(f"\nyour question, answered by each method: {question.text}")
    rows = []
    for method in (*TEXT_METHODS, *CODE_METHODS[1:]):
        row = _run(engine, method, [question])
        md = row.replies[0].response_metadata["tts_metadata"]
        votes = md.get("answer_distribution") or {}
        shown = " ".join(f"{a}:{n}" for a, n in sorted(votes.items(), key=lambda kv: -kv[1]))  # all: ties show
        answer = md["selected_answer"] if md["selected_answer"] is not None else "no answer"
        vote = f"  votes {shown}" if len(md["candidates"]) > 1 and shown else ""
        _say(f"  {method.title:38} -> {answer}{vote}  ({row.tokens} tokens, {row.seconds:.1f}s)")
        rows.append(row)
    _worked_example(rows[-1], [question])


def _section(engine: TTSEngine, methods: Sequence[Method], questions: Sequence[Question]) -> list[Row]:
    _say(f"  {'method':38} {'accuracy':>11} {'tokens/question':>16} {'x greedy':>9} {'time':>7}")
    rows: list[Row] = []
    for method in methods:
        row = _run(engine, method, questions)
        rows.append(row)
        n = len(questions)
        right = sum(row.correct)
        ratio = row.tokens / (rows[0].tokens or 1)
        _say(
            f"  {method.title:38} {f'{right}/{n} {right / n:4.0%}':>11} {row.tokens / n:16.0f} {ratio:9.1f} {row.seconds:6.1f}s"
        )
    return rows


def _run(engine: TTSEngine, method: Method, questions: Sequence[Question]) -> Row:
    from llm_tts.integrations import ChatTTS

    chat = ChatTTS(engine=engine, max_tokens=method.max_tokens, **method.fields)
    start = time.perf_counter()
    replies = chat.batch(
        [_messages(q, code=method.code) for q in questions], config={"max_concurrency": len(questions)}
    )
    row = Row(method, replies, time.perf_counter() - start)
    for q, msg in zip(questions, replies):
        md = msg.response_metadata["tts_metadata"]
        row.correct.append(_is_right(md["selected_answer"], q))
        row.tokens += md["usage"]["completion_tokens"]
    return row


def _messages(question: Question, *, code: bool) -> list[BaseMessage]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    if not code:
        return [SystemMessage(REASONING_SYSTEM_PROMPT), HumanMessage(question.text)]
    from llm_tts.tir.prompts import TIR_SHOTS, TIR_SYSTEM_PROMPT

    shots: list[BaseMessage] = []
    for asked, answered in TIR_SHOTS:
        shots += [HumanMessage(asked), AIMessage(answered)]
    return [SystemMessage(TIR_SYSTEM_PROMPT), *shots, HumanMessage(question.text)]


def _is_right(answer: str | None, question: Question) -> bool:
    from llm_tts.answers import answers_equivalent

    return answer is not None and question.answer is not None and answers_equivalent(answer, question.answer)


def _gain(row: Row, base: Row) -> str:
    """``row`` against ``base``: questions won and lost, and the token ratio."""
    won = sum(r and not b for r, b in zip(row.correct, base.correct))
    lost = sum(b and not r for r, b in zip(row.correct, base.correct))
    return f"{sum(row.correct) - sum(base.correct):+d} right ({won} won, {lost} lost)"


def _compare_text(rows: Sequence[Row]) -> None:
    greedy, voted, adaptive, beam = rows
    saved = 1 - adaptive.tokens / (voted.tokens or 1)
    _say(
        f"  self-consistency vs greedy: {_gain(voted, greedy)} at {voted.tokens / (greedy.tokens or 1):.1f}x the tokens"
    )
    tokens = f"{saved:.0%} fewer tokens" if saved >= 0 else f"{-saved:.0%} more tokens"  # unseeded paths vary
    _say(f"  adaptive stopping vs self-consistency: {tokens}, {_gain(adaptive, voted)}")
    _say(f"  beam search vs greedy: {_gain(beam, greedy)}; vs self-consistency: {_gain(beam, voted)}")


def _compare_code(rows: Sequence[Row]) -> None:
    greedy, coded = rows
    _say(f"  code execution vs greedy: {_gain(coded, greedy)}")


def _worked_example(row: Row, questions: Sequence[Question]) -> None:
    """The first question whose chosen path ran code: what the model wrote, what ran, the vote."""
    for q, msg in zip(questions, row.replies):
        md = msg.response_metadata["tts_metadata"]
        chosen = next((c for c in md["candidates"] if c["status"] == "selected"), None)
        runs = (chosen or {}).get("code_executions") or []
        if not runs:
            continue
        _say(f"\nworked example ({row.method.title}):")
        _say(f"  question: {q.text}" + (f"   (right answer {q.answer})" if q.answer is not None else ""))
        _say("  the chosen path's code:")
        for line in runs[0]["code"].strip().splitlines():
            _say(f"    | {line}")
        _say(f"  the sandbox printed ({runs[0]['status']}):")
        for line in runs[0]["output"].strip().splitlines() or [""]:
            _say(f"    | {line}")
        votes = md.get("answer_distribution") or {}
        shown = " ".join(f"{a}:{n}" for a, n in sorted(votes.items(), key=lambda kv: -kv[1])[:5])
        _say(f"  the vote over {len(md['candidates'])} paths: {shown or 'no answers'}")
        verdict = "" if q.answer is None else " (right)" if _is_right(md["selected_answer"], q) else " (wrong)"
        _say(f"  answer: {md['selected_answer']}{verdict}")
        return
    _say("\n(no path chose to run code, so there is no worked example)")
