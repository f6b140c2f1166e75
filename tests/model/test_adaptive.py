"""Adaptive compute on the embedded model: each stopping rule, with its decision
checked against a hand computation on what the engine really produced (the votes in the order
the paths finished, the top-k logprobs of every trace), the token budget, anytime answers under
a deadline, and the service's 400s and SSE reports.

The backends are wrapped by :class:`Recorder`, a real backend passed through that keeps what the
watcher saw (not a fake: every token comes from the model).
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from llm_tts.backends.base import SampleUpdate, WatchingBackend
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import DeadlineExceededError
from llm_tts.messages import coerce_messages
from llm_tts.strategies import StrategyContext
from polya import stays

QUESTION = [{"role": "user", "content": "What is 3 + 4? Put the final answer in \\boxed{}."}]
ESSAY = [{"role": "user", "content": "Write a very long, detailed essay on the history of Rome, with many sections."}]


class Recorder:
    """Delegates to a real backend; records each watched call's finished segments in finishing
    order and every segment it returned."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.finished: list[list] = []  # per watched call: segments in the order they finished
        self.returned: list[list] = []  # per call: the segments returned (aborted ones included)

    def __getattr__(self, name):
        if name == "submit":  # every call goes through generate or generate_watched, to be recorded
            raise AttributeError(name)
        return getattr(self._backend, name)

    def generate(self, prompts, params):
        rows = self._backend.generate(prompts, params)
        self.returned.append([s for row in rows for s in row])
        return rows

    def generate_watched(self, prompts, params, watcher):
        order: list = []

        def watch(u: SampleUpdate):
            if u.segment is not None:
                order.append(u.segment)
            return watcher(u)

        rows = self._backend.generate_watched(prompts, params, watch)
        self.finished.append(order)
        self.returned.append([s for row in rows for s in row])
        return rows


def answer_of(engine: TTSEngine, seg) -> str | None:
    ctx = StrategyContext("x", engine.backend, None, TTSConfig(), (1,), "")
    return ctx.full_beam(seg).answer


def run(engine: TTSEngine, messages, **fields):
    return engine.run(coerce_messages(messages), TTSConfig.create(**fields))


def test_stop_confidence_decision_matches_the_recorded_votes(vllm_backend):
    rec = Recorder(vllm_backend)
    assert isinstance(rec, WatchingBackend)
    engine = TTSEngine(rec)
    meta = run(engine, QUESTION, num_paths=16, tts_stop_confidence=0.9, max_tokens=96, temperature=0.7).metadata

    # Replay by hand: votes in the order the paths finished; stop at the first point where the
    # leader can no longer be caught or stays(leader, runner-up, paths left) >= 0.9.
    counts: dict[str, int] = {}
    done, expected = 0, "complete"
    for order in rec.finished:
        for seg in order:
            done += 1
            a = answer_of(engine, seg)
            if a is not None:
                counts[a] = counts.get(a, 0) + 1  # the model's answers here are plain integers
            top = sorted(counts.values(), reverse=True) + [0, 0]
            if top[0] and 16 - done > 0:
                if top[0] - top[1] > 16 - done:
                    expected = "consensus"
                elif stays(top[0], top[1], 16 - done) >= 0.9:
                    expected = "confidence"
            if expected != "complete":
                break
        if expected != "complete":
            break
    assert meta.stopped_by == expected
    voters = [c for c in meta.candidates if not c.stopped_early]
    assert len(voters) == done
    aborted = [s for call in rec.returned for s in call if s.finish_reason == "abort"]
    assert len(aborted) == sum(c.stopped_early for c in meta.candidates)
    assert meta.usage.completion_tokens == sum(c.num_tokens for c in meta.candidates)  # aborted tokens counted
    if expected != "complete":
        assert len(meta.candidates) < 16 or aborted  # it really stopped early


def _lowest_group(seg, window: int) -> float:
    confs = [-np.mean(list(top.values())) for top in seg.top_logprobs]
    if len(confs) <= window:
        return float(np.mean(confs))
    return float(min(np.mean(confs[i : i + window]) for i in range(len(confs) - window + 1)))


def test_deepconf_online_stops_traces_below_the_warmup_bar(vllm_backend):
    rec = Recorder(vllm_backend)
    window = 8
    meta = run(
        TTSEngine(rec),
        QUESTION,
        tts_strategy="deepconf",
        num_paths=8,
        tts_deepconf_warmup=4,
        tts_deepconf_percentile=60,
        tts_confidence_window=window,
        max_tokens=96,
    ).metadata
    warm = rec.returned[0]
    bar = float(np.percentile([_lowest_group(s, window) for s in warm], 60))  # by hand, with numpy
    later = [s for call in rec.returned[1:] for s in call]
    for seg in later:
        confs = [-np.mean(list(top.values())) for top in seg.top_logprobs]
        windows = [np.mean(confs[i - window : i]) for i in range(window, len(confs) + 1)]
        if seg.finish_reason == "abort":  # stopped at the first full window below the bar, not before
            assert windows and windows[-1] < bar and all(w >= bar for w in windows[:-1])
        else:
            assert all(w >= bar - 1e-9 for w in windows)
    assert sum(c.stopped_early for c in meta.candidates) == sum(s.finish_reason == "abort" for s in later)
    scored = {round(c.score, 6) for c in meta.candidates if c.score is not None and not c.stopped_early}
    assert scored <= {round(_lowest_group(s, window), 6) for s in warm + later}
    assert meta.stopped_by in ("complete", "consensus", "confidence")
    if meta.stopped_by != "complete":
        assert len(warm) + len(later) < 8


def test_deepconf_offline_keeps_the_confident_traces(hf_backend):
    meta = run(
        TTSEngine(hf_backend),
        QUESTION,
        tts_strategy="deepconf",
        tts_deepconf_mode="offline",
        num_paths=4,
        tts_deepconf_percentile=50,
        max_tokens=64,
    ).metadata
    scores = [c.score for c in meta.candidates]
    bar = float(np.percentile(scores, 50))
    assert {c.status for c in meta.candidates if c.score < bar} <= {"pruned"}
    assert all(c.status in ("kept", "selected") for c in meta.candidates if c.score >= bar)
    winners = [c for c in meta.candidates if c.status != "pruned"]
    weights: dict[str, float] = {}
    for c in winners:
        if c.answer is not None:
            weights[c.answer] = weights.get(c.answer, 0.0) + c.score
    if weights:
        assert meta.selected_answer == max(weights, key=weights.get)


def test_token_budget_is_never_exceeded_by_more_than_one_step(hf_backend):
    budget, rows, step = 40, 4, 16
    meta = run(
        TTSEngine(hf_backend),
        ESSAY,
        tts_strategy="beam_search",
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_step_max_tokens=step,
        tts_max_steps=20,
        tts_token_budget=budget,
        max_tokens=400,
    ).metadata
    assert meta.stopped_by == "budget"
    assert budget <= meta.usage.completion_tokens <= budget + rows * step  # one step's tokens at most
    assert meta.usage.completion_tokens <= budget + rows - 1  # here: a watched batch stops within one token per row


def test_token_budget_on_vllm_self_consistency(vllm_backend):
    meta = run(TTSEngine(vllm_backend), ESSAY, num_paths=4, tts_token_budget=50, max_tokens=200).metadata
    assert meta.stopped_by == "budget"
    # Up to 4 x 200 tokens could run; the watcher aborts every sample as the 50th token arrives.
    assert 50 <= meta.usage.completion_tokens <= 50 + 4 - 1  # within one token per row, as above
    assert sum(c.stopped_early for c in meta.candidates) >= 1


def test_anytime_answers_under_a_deadline_through_chat_tts(tts_engine):
    from llm_tts.integrations import ChatTTS

    search = dict(
        tts_strategy="beam_search",
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_step_max_tokens=8,
        tts_max_steps=200,
        max_tokens=4000,
    )
    llm = ChatTTS(engine=tts_engine, timeout=3.0, tts_anytime=True, **search)
    msg = llm.invoke(ESSAY[0]["content"])
    meta = msg.response_metadata["tts_metadata"]
    assert meta["stopped_by"] == "deadline"
    assert msg.content and meta["candidates"]
    with pytest.raises(DeadlineExceededError):
        ChatTTS(engine=tts_engine, timeout=1.0, **search).invoke(ESSAY[0]["content"])


def test_service_rejects_bad_adaptive_input_with_400(service_url):
    for field, value in [("tts_stop_confidence", 1.0), ("tts_token_budget", 0), ("tts_deepconf_percentile", 101)]:
        r = httpx.post(f"{service_url}/v1/chat/completions", json={"messages": QUESTION, field: value}, timeout=60)
        assert r.status_code == 400, (field, r.text)
        assert r.json()["error"]["param"] == field


def test_service_sse_reports_an_early_stop_as_it_happens(service_url):
    body = {"messages": ESSAY, "stream": True, "num_paths": 2, "max_tokens": 200, "tts_token_budget": 24}
    events, final = [], None
    with httpx.stream("POST", f"{service_url}/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            if "tts_progress" in choice:
                events.append(choice["tts_progress"])
            if "tts_metadata" in choice:
                final = choice["tts_metadata"]
    stops = [e for e in events if e.get("stopped_by")]
    assert stops and stops[0]["stopped_by"] == "budget"
    assert final is not None and final["stopped_by"] == "budget"
    assert events.index(stops[0]) < len(events)  # reported before the answer, as it happened
