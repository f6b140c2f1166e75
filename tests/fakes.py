"""FAKES for the fast test tier: a scripted backend and a scripted scorer. No model runs.

They exist because a real model cannot be told what to write: these let a test decide every
candidate and every score, so it can pin exactly which candidates a strategy keeps, prunes and
selects, how ties break, and how many backend and scorer calls each step costs. Everything a
real model does is tested elsewhere, against real models.

- :class:`FakeScriptedBackend` implements :class:`llm_tts.backends.base.Backend` with a
  character-level "tokenizer" (one token per character, id = ``ord(ch)``). Its script maps the
  completion written so far (the text after the chat prompt) to the continuations it returns,
  in order: sample j of a prefix is ``script[prefix][j]``. Like a real backend it stops right
  after the first stop string ("stop"), cuts at ``max_tokens`` ("length"), and otherwise ends
  the sequence ("eos"). Each token's logprob is ``log(p)`` of its :class:`Out`, so the
  ``perplexity`` scorer scores a step exactly ``p``.
- :class:`FakeScriptedScorer` scores each step from a table keyed by the trajectory's text up
  to and including that step.

Both record their calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llm_tts.backends.base import BackendCapabilities, SampleUpdate, SamplingParams, Watcher
from llm_tts.config import TTSConfig
from llm_tts.events import ProgressEvent
from llm_tts.messages import ChatMessage
from llm_tts.scorers.base import Scorer, ScoreRequest
from llm_tts.strategies import StrategyContext, StrategyOutcome, get_strategy
from llm_tts.types import Segment

ASSISTANT = "<assistant>"  # where the fake chat template hands over to the assistant
QUESTION = "What is 2 + 3?"


@dataclass(frozen=True)
class Out:
    """One scripted continuation: its text and the probability of each of its tokens."""

    text: str
    p: float = 0.5


@dataclass(frozen=True)
class Call:
    """One generate call: the completions it continued (text after the prompt) and its params."""

    prefixes: tuple[str, ...]
    n: int
    max_tokens: int
    stop: tuple[str, ...]


class FakeScriptedBackend:
    """A FAKE backend that returns predetermined continuations; see the module docstring."""

    name = "fake_scripted"
    model_name = "fake-scripted-model"

    def __init__(
        self, script: Mapping[str, Sequence[Out | str]], *, max_context_tokens: int = 100_000, watching: bool = True
    ) -> None:
        self.script = {k: [o if isinstance(o, Out) else Out(o) for o in v] for k, v in script.items()}
        if not watching:  # then isinstance(self, WatchingBackend) is False: the budget is checked per step
            self.generate_watched = None
        self.max_context_tokens = max_context_tokens
        self.capabilities = BackendCapabilities(logprobs=True, seed=True, token_prompts=True)
        self.calls: list[Call] = []
        self.watched: list[tuple[int, int, int]] = []  # generate_watched: (prompt, sample, tokens) per update

    # -- Backend protocol -------------------------------------------------------------------
    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        # template_kwargs: {"opens_thinking": True} ends the prompt inside a thinking span, as
        # DeepSeek-R1's template does (the completion then starts inside its thinking).
        opened = "<think>\n" if (template_kwargs or {}).get("opens_thinking") else ""
        text = "".join(f"<{m.role}>{m.content}\n" for m in messages) + opened + ASSISTANT
        return [ord(c) for c in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(map(chr, token_ids))

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return [chr(t) for t in token_ids]

    def encode(self, text: str) -> list[int]:  # EncodingBackend: code_execution injects tool output
        return [ord(c) for c in text]

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        prefixes = tuple(self.decode(p).split(ASSISTANT, 1)[1] for p in prompts)
        self.calls.append(Call(prefixes, params.n, params.max_tokens, params.stop))
        return [[self._segment(out, params) for out in self._outputs(prefix, params.n)] for prefix in prefixes]

    def close(self) -> None:
        pass

    # -- watching: every sample streams one token per round, in order -------------
    def generate_watched(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher
    ) -> list[list[Segment]]:
        """Like a real engine step by step: in round t every running sample gets its t-th token
        (prompt-major order), so shorter samples finish first; verdicts abort samples (kept with
        the tokens they had, finish_reason "abort"). ``watched`` records (prompt, sample, tokens)."""
        rows = self.generate(prompts, params)
        have = {(i, j): 0 for i, row in enumerate(rows) for j in range(len(row))}
        running = set(have)
        aborted: set[tuple[int, int]] = set()
        while running:
            for i, j in sorted(running):
                if (i, j) not in running:
                    continue  # aborted earlier in this round
                seg = rows[i][j]
                have[i, j] = min(len(seg), have[i, j] + 1)
                t = have[i, j]
                done = t == len(seg)
                if done:
                    running.discard((i, j))
                self.watched.append((i, j, t))
                verdict = watcher(
                    SampleUpdate(
                        i,
                        j,
                        seg.token_ids[:t],
                        None if seg.logprobs is None else seg.logprobs[:t],
                        None if seg.top_logprobs is None else seg.top_logprobs[:t],
                        1 if len(seg) else 0,
                        seg if done else None,
                    )
                )
                stop = set(running) if verdict == "abort_all" else {(i, j)} & running if verdict == "abort" else set()
                running -= stop
                aborted |= stop
        return [
            [self._aborted(seg, have[i, j]) if (i, j) in aborted else seg for j, seg in enumerate(row)]
            for i, row in enumerate(rows)
        ]

    def _aborted(self, seg: Segment, t: int) -> Segment:
        return replace(
            seg,
            token_ids=seg.token_ids[:t],
            text=self.decode(seg.token_ids[:t]),
            logprobs=None if seg.logprobs is None else seg.logprobs[:t],
            top_logprobs=None if seg.top_logprobs is None else seg.top_logprobs[:t],
            finish_reason="abort",
            stop_text=None,
        )

    # -- the script -------------------------------------------------------------------------
    def _outputs(self, prefix: str, n: int) -> list[Out]:
        outs = self.script.get(prefix)
        if outs is None or len(outs) < n:
            raise AssertionError(
                f"the script has {0 if outs is None else len(outs)} continuations of {prefix!r}, asked for {n}"
            )
        return outs[:n]

    def _segment(self, out: Out, params: SamplingParams) -> Segment:
        text, reason, stop_text = out.text, "eos", None
        hits = [(text.index(s) + len(s), s) for s in params.stop if s in text]
        if hits:
            end, stop_text = min(hits)
            text, reason = text[:end], "stop"
        if len(text) > params.max_tokens:
            text, reason, stop_text = text[: params.max_tokens], "length", None
        ids = tuple(ord(c) for c in text)
        lp = math.log(out.p)
        return Segment(
            token_ids=ids,
            text=text,
            logprobs=(lp,) * len(ids) if params.logprobs else None,
            top_logprobs=tuple({t: lp} for t in ids) if params.top_logprobs else None,
            finish_reason=reason,  # type: ignore[arg-type]
            stop_text=stop_text,
        )


@dataclass
class FakeScriptedScorer(Scorer):
    """A FAKE scorer: step i of a trajectory scores ``scores[text of steps 0..i]``."""

    scores: Mapping[str, float]
    calls: list[list[tuple[int, int]]] = field(default_factory=list)  # per call: (steps, first_unscored) per request

    name = "fake_scripted"  # type: ignore[misc]

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        self.calls.append([(len(r.steps), r.first_unscored) for r in requests])
        out = []
        for r in requests:
            texts = [s.text for s in r.steps]
            out.append([self.scores["".join(texts[: i + 1])] for i in range(r.first_unscored, len(texts))])
        return out


@dataclass
class FakeRun:
    outcome: StrategyOutcome
    ctx: StrategyContext
    events: list[ProgressEvent]

    def statuses(self) -> list[tuple[str, str]]:
        """(completion text, status) of every candidate, in the outcome's order."""
        return [(b.text, b.status) for b in self.outcome.candidates]


def run_strategy(strategy: str, backend: FakeScriptedBackend, scorer: Scorer | None, **config: object) -> FakeRun:
    """Run ``strategy`` on the fakes as the engine would (one context, one question)."""
    cfg = TTSConfig.create(tts_strategy=strategy, temperature=1.0, **config)
    prompt = backend.render_chat([ChatMessage(role="user", content=QUESTION)])
    events: list[ProgressEvent] = []
    ctx = StrategyContext(strategy, backend, scorer, cfg, prompt, QUESTION, progress=events.append)
    return FakeRun(get_strategy(strategy).run(ctx), ctx, events)
