"""Watching a running generation and aborting it, on the real local backends.

An aborted sample must really stop: its tokens stop growing (no update after the abort, its
segment holds exactly the tokens seen), the others run on, and on vLLM its engine request is
gone (the engine's running request count drops while the others still decode).
"""

from __future__ import annotations

import time

import pytest

from llm_tts.backends.base import SampleUpdate, SamplingParams, WatchingBackend
from llm_tts.messages import ChatMessage

PROMPT = [ChatMessage(role="user", content="Write a long story about a dragon who learns to count.")]
ABORT_AT = 4


def _params(n: int) -> SamplingParams:
    return SamplingParams(n=n, temperature=1.0, max_tokens=40, top_logprobs=3)


class AbortOne:
    """Aborts sample 0 at its ABORT_AT-th token; records every update and the engine's load."""

    def __init__(self, running=None) -> None:
        self.updates: list[tuple[int, int, bool]] = []  # (sample, tokens so far, finished)
        self.running = running
        self.load_before: list[int] = []
        self.load_after: list[int] = []
        self.aborted_at: int | None = None

    def __call__(self, u: SampleUpdate) -> str:
        self.updates.append((u.sample_index, len(u.token_ids), u.finished))
        assert u.top_logprobs is not None and len(u.top_logprobs) == len(u.token_ids)
        if self.running is not None and u.sample_index == 1 and not u.finished:
            # a few steps past the abort, so the engine loop has surely handled it
            (self.load_before if self.aborted_at is None else self.load_after).append(self.running())
            if self.aborted_at is not None and len(u.token_ids) < self.aborted_at + 3:
                self.load_after.pop()
        if u.sample_index == 0 and len(u.token_ids) >= ABORT_AT and not u.finished:
            self.aborted_at = len(u.token_ids)
            return "abort"
        return "continue"


def _check_aborted(backend: WatchingBackend, watcher: AbortOne) -> list:
    prompt = backend.render_chat(PROMPT)
    (row,) = backend.generate_watched([prompt], _params(3), watcher)
    seg = row[0]
    assert seg.finish_reason == "abort"
    assert len(seg) == watcher.aborted_at  # it kept exactly the tokens it had
    assert seg.logprobs is not None and len(seg.logprobs) == len(seg)
    assert seg.text == backend.decode(seg.token_ids)
    after = [n for s, n, _ in watcher.updates if s == 0 and n > watcher.aborted_at]
    assert after == []  # its tokens stopped growing
    others = [n for s, n, _ in watcher.updates if s != 0]
    assert max(others) > watcher.aborted_at  # the others ran on
    assert all(s.finish_reason != "abort" for s in row[1:])
    return row


def test_transformers_abort_leaves_the_batch(hf_backend):
    assert isinstance(hf_backend, WatchingBackend)
    watcher = AbortOne()
    row = _check_aborted(hf_backend, watcher)
    for j, seg in enumerate(row[1:], start=1):  # each finished sample's last update carries its segment
        assert watcher.updates[[i for i, u in enumerate(watcher.updates) if u[0] == j][-1]][2]
        assert len(seg) == max(n for s, n, _ in watcher.updates if s == j)


def test_transformers_abort_all(hf_backend):
    prompt = hf_backend.render_chat(PROMPT)
    rows = hf_backend.generate_watched(
        [prompt, prompt], _params(2), lambda u: "abort_all" if len(u.token_ids) >= 3 else "continue"
    )
    assert [len(s) for row in rows for s in row] == [3, 3, 3, 3]
    assert {s.finish_reason for row in rows for s in row} == {"abort"}


def test_vllm_abort_frees_the_engine_slot(vllm_backend):
    assert isinstance(vllm_backend, WatchingBackend)
    watcher = AbortOne(running=vllm_backend.engine.get_num_unfinished_requests)
    _check_aborted(vllm_backend, watcher)
    assert watcher.load_before and set(watcher.load_before) == {3}
    assert watcher.load_after and max(watcher.load_after) <= 2  # the aborted request left the engine
    _wait_idle(vllm_backend)


def test_vllm_abort_all(vllm_backend):
    prompt = vllm_backend.render_chat(PROMPT)
    rows = vllm_backend.generate_watched(
        [prompt], _params(3), lambda u: "abort_all" if len(u.token_ids) >= 5 else "continue"
    )
    assert {s.finish_reason for s in rows[0]} == {"abort"}
    assert all(1 <= len(s) <= 6 for s in rows[0])  # a step's tokens may be on their way
    _wait_idle(vllm_backend)  # the engine loop handles the aborts before its next step
    assert vllm_backend.engine.get_num_unfinished_requests() == 0


def test_watcher_error_aborts_everything(vllm_backend):
    def boom(u: SampleUpdate) -> str:
        raise RuntimeError("watcher failed")

    with pytest.raises(RuntimeError, match="watcher failed"):
        vllm_backend.generate_watched([vllm_backend.render_chat(PROMPT)], _params(2), boom)
    _wait_idle(vllm_backend)


def _wait_idle(backend) -> None:
    give_up = time.monotonic() + 30  # a bound for a hung loop, not a timing assertion
    while backend.running_requests() and time.monotonic() < give_up:
        time.sleep(0.02)
    assert backend.running_requests() == 0


@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_openai_backend_abort_closes_the_stream(vllm_server_url):
    """Over HTTP to vLLM's own server: each sample streams; an aborted one's connection is closed
    and its tokens stop growing while the others run to their end."""
    from llm_tts.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(base_url=vllm_server_url, provider="vllm", max_concurrency=8)
    try:
        assert isinstance(backend, WatchingBackend)
        watcher = AbortOne()
        row = _check_aborted(backend, watcher)
        assert all(s.finish_reason in ("eos", "length", "stop") for s in row[1:])
        rows = backend.generate_watched(
            [backend.render_chat(PROMPT)], _params(2), lambda u: "abort_all" if len(u.token_ids) >= 3 else "continue"
        )
        assert {s.finish_reason for s in rows[0]} == {"abort"}
        assert all(len(s) < 40 for s in rows[0])
    finally:
        backend.close()
