"""A generative verifier: a chat model (the policy backend by default) judges each step.

For every step to score, the judge model sees the question, the earlier steps and the new
step, is asked whether the new step is correct, and its answer turn is pre-filled with
``"Answer:"`` so that the next token is almost always Yes or No. One generated token with its
top-k logprobs gives::

    score = P(yes) / (P(yes) + P(no))          in [0, 1], higher = better

where P(yes) sums the probabilities of the top-k tokens that read "yes" (any case, leading
space or trailing punctuation), and likewise for P(no). An answer absent from the top-k gets
the upper bound of its probability, the smallest top-k probability; so when neither appears
the score is 0.5 ("the judge said nothing either way"), and never a silent 0.

Only ``backend.render_chat`` and ``backend.generate(max_tokens=1, top_logprobs=k)`` are used,
in one batched call for all steps of all requests, so it runs on any backend with logprobs.
When a prompt does not fit the judge's context, the earliest steps are dropped (replaced by
"...") until it does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.cost import parameter_count
from llm_tts.errors import CapabilityError, ContextLengthError
from llm_tts.messages import ChatMessage
from llm_tts.scorers.base import Scorer, ScorerContext, ScoreRequest, register_scorer
from llm_tts.types import Step

if TYPE_CHECKING:
    from llm_tts.backends.base import Backend

JUDGE_TOP_K = 20
JUDGE_SYSTEM = "You are a careful math teacher. You check one step of a student's solution and reply Yes or No."
ANSWER_PREFIX = "Answer:"
_YES, _NO = "yes", "no"


class LLMJudgeScorer(Scorer):
    """P(yes) / (P(yes) + P(no)) from one judged token per step; see the module docstring."""

    name = "llm_judge"
    needs_logprobs = False  # about the policy's generation: the judge asks for its own logprobs

    def __init__(self, backend: Backend, *, top_k: int = JUDGE_TOP_K) -> None:
        caps = backend.capabilities
        if not caps.logprobs or caps.max_top_logprobs < 1:
            raise CapabilityError(
                f"scorer 'llm_judge' needs top-k logprobs from the judge model, which backend {backend.name!r} "
                "cannot return; use a backend with logprobs"
            )
        self.backend = backend
        self.top_k = min(top_k, caps.max_top_logprobs)

    @property
    def parameter_count(self) -> int | None:
        """The judge is the policy model: its parameters (for the run's FLOPs estimate)."""
        return parameter_count(self.backend)

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        prompts = [
            self._prompt(r.question, r.steps, i) for r in requests for i in range(r.first_unscored, len(r.steps))
        ]
        if not prompts:
            return [[] for _ in requests]
        params = SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=self.top_k)
        segments = self.backend.generate(prompts, params)
        flat = [self._yes_probability(samples[0].top_logprobs) for samples in segments]
        out, at = [], 0
        for r in requests:
            k = len(r.new_steps)
            out.append(flat[at : at + k])
            at += k
        return out

    def _prompt(self, question: str, steps: Sequence[Step], i: int) -> list[int]:
        """The judge's prompt for ``steps[i]``; earliest context steps dropped if it does not fit."""
        first = 0
        while True:
            ids = self.backend.render_chat(_judge_messages(question, steps, first, i))
            if len(ids) < self.backend.max_context_tokens:
                return ids
            if first == i:  # nothing left to drop: the question and the step alone are too long
                raise ContextLengthError(len(ids), self.backend.max_context_tokens, param="llm_judge")
            first += 1

    def _yes_probability(self, top_logprobs: Sequence[Mapping[int, float]] | None) -> float:
        if not top_logprobs or not top_logprobs[0]:
            raise CapabilityError(f"backend {self.backend.name!r} returned no top logprobs for the judge's answer")
        top = top_logprobs[0]
        texts = self.backend.token_texts(list(top))
        mass = {_YES: 0.0, _NO: 0.0}
        for text, lp in zip(texts, top.values()):
            word = text.strip().strip(".,!:").lower()
            if word in mass:
                mass[word] += math.exp(lp)
        floor = min(math.exp(lp) for lp in top.values())  # bound for an answer outside the top-k
        p_yes, p_no = (mass[w] or floor for w in (_YES, _NO))
        return p_yes / (p_yes + p_no)


def _judge_messages(question: str, steps: Sequence[Step], first: int, i: int) -> list[ChatMessage]:
    earlier = "".join(s.text for s in steps[first:i]).strip()
    if first > 0:
        earlier = "...\n" + earlier
    parts = [f"Question: {question.strip()}"]
    if earlier:
        parts.append(f"Solution so far:\n{earlier}")
    parts.append(f"New step:\n{steps[i].text.strip()}")
    parts.append("Is the new step correct? Answer Yes or No.")
    return [
        ChatMessage(role="system", content=JUDGE_SYSTEM),
        ChatMessage(role="user", content="\n\n".join(parts)),
        ChatMessage(role="assistant", content=ANSWER_PREFIX),  # pre-filled: the next token is the verdict
    ]


@register_scorer("llm_judge")
def _create(ctx: ScorerContext) -> Scorer:
    return LLMJudgeScorer(ctx.backend)
