"""What a PRM in the Qwen2.5-Math-PRM format reads, and how requests become model inputs.

Input (as in the model card): the PRM's chat template renders

    system    "Please reason step by step, and put your final answer within \\boxed{}."
    user      the question
    assistant step_1 <extra_0> step_2 <extra_0> ... step_n <extra_0>

and the reward of step i is ``softmax(logits)[1]`` (P(correct)) at the i-th ``<extra_0>``. Step
texts are stripped of surrounding whitespace (the delimiter ``"\\n\\n"`` is what ``<extra_0>``
replaces) and of any literal ``<extra_0>``. Scores are in [0, 1], higher = better.

Truncation: when the question and the steps do not fit the PRM's context, the earliest steps
are dropped from the PRM's view (whole steps, from the left); every step is still scored, with
as many of the steps before it as fit. A single step that does not fit together with the
question raises :class:`~llm_tts.errors.ContextLengthError`.

Both PRM runners (:mod:`~llm_tts.scorers.prm.transformers_runner`,
:mod:`~llm_tts.scorers.prm.vllm_runner`) hold a :class:`PRMInputs` and differ only in how they
run the :class:`PRMJob` it plans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_tts.errors import ContextLengthError, ModelLoadError
from llm_tts.scorers.base import ScoreRequest

PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_SEPARATOR = "<extra_0>"
PRM_ARCHITECTURE = "Qwen2ForProcessRewardModel"
PRM_MODEL_TYPE = "qwen2"
_MARK = "\ue000STEPS\ue000"  # private-use text that no template touches; split point of the render


def check_prm_folder(folder: Path) -> None:
    """Raise ModelLoadError unless ``folder``'s config is a PRM in the Qwen2.5-Math-PRM format."""
    config = json.loads((Path(folder) / "config.json").read_text())
    archs = config.get("architectures") or []
    if PRM_ARCHITECTURE not in archs or config.get("model_type") != PRM_MODEL_TYPE:
        raise ModelLoadError(
            f"{str(folder)!r} is not a process reward model in the Qwen2.5-Math-PRM format: config has "
            f"architectures={archs} model_type={config.get('model_type')!r}, expected [{PRM_ARCHITECTURE!r}] "
            f"and {PRM_MODEL_TYPE!r}"
        )


def prm_messages(question: str, step_texts: Sequence[str]) -> list[dict[str, str]]:
    """The chat the PRM judges, in the model card's format (steps joined by ``<extra_0>``)."""
    steps = [_clean_step(t) for t in step_texts]
    return [
        {"role": "system", "content": PRM_SYSTEM},
        {"role": "user", "content": question.replace(STEP_SEPARATOR, "")},  # separators mark steps only
        {"role": "assistant", "content": STEP_SEPARATOR.join(steps) + STEP_SEPARATOR},
    ]


def _clean_step(text: str) -> str:
    """A step as the PRM was trained on it: no surrounding whitespace, no literal separator."""
    return text.replace(STEP_SEPARATOR, "").strip()


@dataclass(frozen=True)
class PRMTokenizer:
    """A PRM's tokenizer and the token ids its inputs need; checked when built."""

    hf: Any  # the transformers tokenizer
    sep_id: int
    pad_id: int

    @classmethod
    def of(cls, tokenizer: Any, folder: Path) -> PRMTokenizer:
        sep_id = tokenizer.convert_tokens_to_ids(STEP_SEPARATOR)
        if STEP_SEPARATOR not in tokenizer.get_vocab() or sep_id is None:
            raise ModelLoadError(f"PRM tokenizer in {str(folder)!r} has no {STEP_SEPARATOR!r} token")
        if not tokenizer.chat_template:
            raise ModelLoadError(f"PRM tokenizer in {str(folder)!r} has no chat template")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(tokenizer, int(sep_id), int(pad if pad is not None else 0))


@dataclass
class PRMStats:
    """Token counts of one scorer, to check that prefixes are reused (tests, benchmarks)."""

    forward_calls: int = 0
    computed_tokens: int = 0  # tokens run through the model
    reused_tokens: int = 0  # tokens whose KV came from a prefix cache


@dataclass
class PRMJob:
    """One PRM input: ``ids`` end at the last separator; score steps ``first_scored`` onwards."""

    request: int
    ids: list[int]
    seps: list[int]  # position of each window step's separator in ids
    first_scored: int


class PRMInputs:
    """Turns score requests into :class:`PRMJob` windows that fit ``max_context_tokens``, and
    the jobs' scores back into per-request scores."""

    def __init__(self, tokenizer: PRMTokenizer, max_context_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens
        self._heads: dict[str, str] = {}

    def score(
        self, requests: Sequence[ScoreRequest], run: Callable[[list[PRMJob]], list[list[float]]]
    ) -> list[list[float]]:
        """Plan every request into jobs, ``run`` them in one call, and collect each request's scores."""
        jobs = [job for i, r in enumerate(requests) for job in self.plan(i, r)]
        out: list[list[float]] = [[] for _ in requests]
        for job, scores in zip(jobs, run(jobs) if jobs else []):
            out[job.request].extend(scores)  # a request's jobs are planned in step order
        return out

    def input_ids(self, question: str, step_texts: Sequence[str]) -> list[int]:
        """The PRM's input for a whole trajectory, ending at its last separator (no truncation)."""
        return _Encoded(self.tokenizer, self._head(question), step_texts).ids(0, len(step_texts))[0]

    def plan(self, index: int, r: ScoreRequest) -> list[PRMJob]:
        """The jobs that score ``r.steps[r.first_unscored:]``: one when everything fits, else
        windows of whole steps, each with as many earlier steps as fit."""
        n = len(r.steps)
        if r.first_unscored == n:
            return []
        enc = _Encoded(self.tokenizer, self._head(r.question), [s.text for s in r.steps])
        limit = self.max_context_tokens
        if enc.length(0, n) <= limit:
            return [PRMJob(index, *enc.ids(0, n), r.first_unscored)]
        jobs = []
        start = r.first_unscored
        while start < n:  # steps [start, end) scored in this window, with steps [a, start) as context
            if (size := enc.length(start, start + 1)) > limit:
                raise ContextLengthError(size, limit, param="prm")
            end = start + 1
            while end < n and enc.length(start, end + 1) <= limit:
                end += 1
            a = start
            while a > 0 and enc.length(a - 1, end) <= limit:
                a -= 1
            jobs.append(PRMJob(index, *enc.ids(a, end), start - a))
            start = end
        return jobs

    def _head(self, question: str) -> str:
        """The rendered chat up to where the assistant's steps begin."""
        if question not in self._heads:
            text = self.tokenizer.hf.apply_chat_template(
                prm_messages(question, [_MARK]), tokenize=False, add_generation_prompt=False
            )
            if _MARK not in text:
                raise ModelLoadError("the PRM's chat template does not render the assistant message")
            self._heads[question] = text.split(_MARK)[0]
        return self._heads[question]


class _Encoded:
    """Token ids of windows ``steps[a:e]`` of one request, each step encoded once.

    The separator is a special token, so the tokenizer encodes the text between separators
    independently: ids(a, e) equals encoding the rendered string of that window in one go.
    """

    def __init__(self, tokenizer: PRMTokenizer, head: str, texts: Sequence[str]) -> None:
        self.tok, self.sep, self.head = tokenizer.hf, tokenizer.sep_id, head
        self.texts = [_clean_step(t) for t in texts]
        self.steps = [self.tok.encode(t, add_special_tokens=False) for t in self.texts]
        self.firsts: dict[int, list[int]] = {}  # the head is encoded together with the window's first step
        self.prefix = [0]
        for s in self.steps:
            self.prefix.append(self.prefix[-1] + len(s) + 1)

    def _first(self, a: int) -> list[int]:
        if a not in self.firsts:
            self.firsts[a] = self.tok.encode(self.head + self.texts[a], add_special_tokens=True)
        return self.firsts[a]

    def length(self, a: int, e: int) -> int:
        return len(self._first(a)) + 1 + self.prefix[e] - self.prefix[a + 1]

    def ids(self, a: int, e: int) -> tuple[list[int], list[int]]:
        ids = [*self._first(a), self.sep]
        seps = [len(ids) - 1]
        for s in self.steps[a + 1 : e]:
            ids.extend(s)
            ids.append(self.sep)
            seps.append(len(ids) - 1)
        return ids, seps
