"""The run stream on the real engine (embedded SmolLM2, transformers backend): progress events
then the result, planned once, consumed sync or async, cancelled when the consumer stops early,
stopped by its deadline."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSResult
from llm_tts.errors import DeadlineExceededError, RunCancelledError
from llm_tts.events import ProgressEvent
from llm_tts.integrations.inprocess import iter_run
from llm_tts.integrations.run_items import Reply
from llm_tts.messages import coerce_messages
from llm_tts.progress import RunControl
from llm_tts.run_stream import RunStream
from recording_engine import RecordingEngine

QUESTION = coerce_messages([{"role": "user", "content": "What is 2 + 3? Answer briefly."}])
BEAMS = TTSConfig.create(
    tts_strategy="beam_search",
    tts_scorer="entropy",
    tts_beam_size=2,
    tts_candidates_per_step=2,
    tts_max_steps=3,
    tts_step_max_tokens=8,
    max_tokens=24,
    temperature=0.0,
    seed=7,
)
# A search that would run for minutes if nothing stopped it (an essay: no early end of sequence).
ESSAY = coerce_messages([{"role": "user", "content": "Write a very long, detailed essay on the history of Rome."}])
LONG_SEARCH = TTSConfig.create(
    tts_strategy="beam_search",
    tts_scorer="entropy",
    tts_beam_size=2,
    tts_candidates_per_step=2,
    tts_max_steps=200,
    tts_step_max_tokens=4,
    tts_step_delimiter="\n\n\n\n",
    max_tokens=4000,
    temperature=1.0,
)


@pytest.fixture
def engine(hf_backend):
    return RecordingEngine(hf_backend)


def test_sync_and_async_consumers_get_progress_then_the_result_of_one_plan(engine, hf_backend, monkeypatch):
    renders = []
    render = hf_backend.render_chat
    monkeypatch.setattr(hf_backend, "render_chat", lambda msgs: renders.append(msgs) or render(msgs))
    plan = engine.plan(QUESTION, BEAMS)
    with RunStream.start(engine, plan) as run:
        events = list(run)
    assert len(renders) == 1  # the run reused the plan's rendering
    *progress, result = events
    assert progress and all(isinstance(e, ProgressEvent) and e.strategy == "beam_search" for e in progress)
    assert [e.step for e in progress] == sorted(e.step for e in progress)
    assert isinstance(result, TTSResult) and result.metadata.strategy == "beam_search"

    async def consume():
        with RunStream.start(engine, engine.plan(QUESTION, BEAMS)) as run:
            return [event async for event in run]

    async_events = asyncio.run(consume())
    assert [e for e in async_events if isinstance(e, ProgressEvent)] == progress
    assert async_events[-1].text == result.text  # greedy: the same search, the same answer


def test_sync_consumer_that_stops_early_cancels_the_run(engine):
    released = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as executor:
        run = RunStream.start(engine, engine.plan(ESSAY, LONG_SEARCH), executor=executor)
        run.when_done(released.set)
        with run:
            assert isinstance(next(run), ProgressEvent)  # the search is under way
        ended = engine.ended.get(timeout=120)
    assert isinstance(ended, RunCancelledError), ended
    assert released.wait(timeout=30)  # the owner hears when the worker is free again


def test_abandoned_in_process_generator_cancels_the_run(engine):
    items = iter_run(engine, ESSAY, LONG_SEARCH)
    assert isinstance(next(items), ProgressEvent)
    items.close()  # what LangChain does when a caller breaks out of llm.stream(...)
    assert isinstance(engine.ended.get(timeout=120), RunCancelledError)


def test_async_consumer_cancelled_while_waiting_cancels_the_run(engine):
    async def main():
        started = asyncio.Event()

        async def consume():
            with RunStream.start(engine, engine.plan(ESSAY, LONG_SEARCH)) as run:
                async for _ in run:
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()  # e.g. the caller's timeout, or a client that went away
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert isinstance(engine.ended.get(timeout=120), RunCancelledError)


def test_deadline_from_run_control_ends_the_stream_with_the_deadline_error(engine):
    run = RunStream.start(engine, engine.plan(ESSAY, LONG_SEARCH), control=RunControl.with_timeout(1.0))
    with pytest.raises(DeadlineExceededError), run:
        for _ in run:
            pass
    assert isinstance(engine.ended.get(timeout=120), DeadlineExceededError)


def test_in_process_adapter_turns_the_result_into_a_reply(engine):
    *progress, reply = list(iter_run(engine, QUESTION, BEAMS))
    assert progress and all(isinstance(e, ProgressEvent) for e in progress)
    assert isinstance(reply, Reply) and reply.tts_metadata["strategy"] == "beam_search"
    assert reply.total_tokens == reply.input_tokens + reply.output_tokens > 0
