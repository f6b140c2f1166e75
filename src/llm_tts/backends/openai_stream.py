"""Watching OpenAI-compatible generations as they stream, and stopping them by closing the connection.

The OpenAI backend's :meth:`~llm_tts.backends.openai_backend.OpenAIBackend.generate_watched`:
every sample is its own streamed request (``n=1``, ``stream: true``), read in a worker of the
backend's pool. Each chunk is merged into the same choice shape a non-streamed answer has
(completions: text, token ids and the logprob lists; chat: content and ``logprobs.content``), so
the dialect that reads whole answers reads the partial one too. The caller's thread runs the
watcher on every chunk; to abort a sample it flags the worker, which closes the connection at
its next chunk (vLLM and SGLang abort a request whose client went away; a hosted API stops
billing it). The aborted segment keeps the tokens that arrived, with ``finish_reason="abort"``.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import Any

from llm_tts.backends.base import SampleUpdate, SamplingParams, Watcher
from llm_tts.backends.openai_dialects import Dialect
from llm_tts.backends.openai_endpoint import Endpoint
from llm_tts.backends.usage import record_usage, usage_of
from llm_tts.errors import RemoteAPIError
from llm_tts.types import Segment

_POLL_S = 0.05  # how often the caller looks for a failed worker while no chunk arrives
_EMPTY_ABORTED = Segment((), "", finish_reason="abort")  # aborted before its first token arrived


@dataclass
class _Chunk:
    index: int  # the sample (prompt-major)
    segment: Segment | None  # everything so far (None: a usage-only chunk)
    final: bool = False
    usage: tuple[int, int, int] | None = None


def merge_choice(merged: dict[str, Any], delta: dict[str, Any]) -> None:
    """Fold one streamed choice into ``merged``, which keeps the shape of a non-streamed choice."""
    if "text" in delta:  # completions
        merged["text"] = merged.get("text", "") + (delta.get("text") or "")
    if "delta" in delta:  # chat
        message = merged.setdefault("message", {"content": ""})
        message["content"] += (delta.get("delta") or {}).get("content") or ""
    if delta.get("token_ids") is not None:
        merged["token_ids"] = merged.get("token_ids", []) + list(delta["token_ids"])
    lp = delta.get("logprobs")
    if lp:
        into = merged.setdefault("logprobs", {})
        for key, value in lp.items():
            if isinstance(value, list):
                into[key] = into.get(key, []) + value
    for key in ("finish_reason", "stop_reason"):
        if delta.get(key) is not None:
            merged[key] = delta[key]


def sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of an SSE stream's ``data:`` lines, up to ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def generate_watched(
    endpoint: Endpoint,
    dialect: Dialect,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    watcher: Watcher,
    submit: Callable[..., Future[None]] | Executor,
) -> list[list[Segment]]:
    """Every sample as its own streamed request; see the module doc."""
    n = params.n
    one = replace(params, n=1)
    bodies = []
    for prompt in prompts:
        body = dialect.body(prompt, one)
        for j in range(n):
            sample = {**body, "stream": True, "stream_options": {"include_usage": True}}
            if "seed" in body:
                sample["seed"] = body["seed"] + j  # n requests, not n clones
            bodies.append(sample)
    chunks: queue.SimpleQueue[_Chunk] = queue.SimpleQueue()
    stops = [threading.Event() for _ in bodies]
    run = submit.submit if isinstance(submit, Executor) else submit
    workers = [run(_stream_one, endpoint, dialect, i, body, one, stops[i], chunks) for i, body in enumerate(bodies)]
    latest: list[Segment | None] = [None] * len(bodies)
    segments: list[Segment | None] = [None] * len(bodies)
    running = set(range(len(bodies)))
    try:
        while running:
            try:
                chunk = chunks.get(timeout=_POLL_S)
            except queue.Empty:
                for i in [i for i in running if workers[i].done()]:
                    workers[i].result()  # a failed worker raises here
                    running.discard(i)  # a stream that ended without a finish reason: keep what came
                    segments[i] = latest[i]
                continue
            i, seg = chunk.index, chunk.segment
            if chunk.usage is not None:
                record_usage(*chunk.usage)
            if seg is None or i not in running:
                continue  # usage only, or a chunk that was on its way when the sample was aborted
            added = len(seg) - (len(latest[i]) if latest[i] is not None else 0)  # type: ignore[arg-type]
            latest[i] = seg
            if chunk.final:
                running.discard(i)
                segments[i] = seg
            verdict = watcher(
                SampleUpdate(
                    i // n, i % n, seg.token_ids, seg.logprobs, seg.top_logprobs, added, seg if chunk.final else None
                )
            )
            for k in list(running) if verdict == "abort_all" else [i] if verdict == "abort" and i in running else []:
                stops[k].set()  # its worker closes the connection at its next chunk
                running.discard(k)
                last = latest[k]
                segments[k] = replace(last, finish_reason="abort", stop_text=None) if last else _EMPTY_ABORTED
    except BaseException:
        for event in stops:
            event.set()
        raise
    for w in workers:
        w.result()  # every connection is closed
    while True:  # usage that arrived after the last sample ended
        try:
            chunk = chunks.get_nowait()
        except queue.Empty:
            break
        if chunk.usage is not None:
            record_usage(*chunk.usage)
    done = [s if s is not None else _EMPTY_ABORTED for s in segments]
    return [done[i * n : (i + 1) * n] for i in range(len(prompts))]


def _stream_one(
    endpoint: Endpoint,
    dialect: Dialect,
    index: int,
    body: dict[str, Any],
    params: SamplingParams,
    stop: threading.Event,
    out: queue.SimpleQueue[_Chunk],
) -> None:
    merged: dict[str, Any] = {}
    with endpoint.stream(dialect.path, body) as lines:
        for data in sse_data(lines):
            if data.get("usage"):
                out.put(_Chunk(index, None, usage=usage_of(data["usage"])))
            choices = data.get("choices") or []
            if not choices:
                continue
            for choice in choices:
                merge_choice(merged, choice)
            reason = merged.get("finish_reason")
            if reason in ("abort", "error"):
                raise RemoteAPIError(f"the server ended a streamed sample with finish_reason={reason!r}")
            if reason is not None:
                out.put(_Chunk(index, dialect.segment(merged, params, None), final=True))
            else:  # read as cut by a limit: a partial answer is not an end of sequence
                out.put(_Chunk(index, dialect.segment({**merged, "finish_reason": "length"}, params, None)))
            if stop.is_set():
                return  # leaving the with-block closes the connection: the server aborts the request
