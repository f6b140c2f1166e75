"""Running an evaluation: every (question, configuration, seed) not yet done, concurrently.

``concurrency`` worker threads take jobs from one queue and send them to one solver: in-process,
one :class:`~llm_tts.engine.TTSEngine` (so a batching backend such as vLLM batches across
questions), or an llm-tts service through ChatTTS's HTTP mode (``base_url``; point it at a fleet
behind one address). The calling thread alone writes rows, in the order they finish, so an
interrupt (Ctrl-C, a kill) loses at most the runs in flight. Ctrl-C cancels the runs in process.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError, RunCancelledError
from llm_tts.evaluation.configurations import Configuration
from llm_tts.evaluation.dataset import Question
from llm_tts.evaluation.progress import EvalProgress
from llm_tts.evaluation.records import ResultRow, RowKey, is_correct
from llm_tts.evaluation.store import ResultsStore
from llm_tts.messages import REASONING_SYSTEM_PROMPT, ChatMessage
from llm_tts.metadata import TTSMetadata
from llm_tts.progress import RunControl

_STOP_WAIT_S = 30.0  # how long an interrupted evaluation waits for its runs in flight to stop


class Solver(Protocol):
    """Answers one question under one config; ``check`` refuses what a run would refuse."""

    def check(self, messages: list[ChatMessage], config: TTSConfig) -> None: ...

    def solve(self, messages: list[ChatMessage], config: TTSConfig, control: RunControl) -> TTSMetadata: ...

    def close(self) -> None: ...


class InProcessSolver:
    """All questions through one engine in this process."""

    def __init__(self, engine: TTSEngine, *, owns_engine: bool = False) -> None:
        self.engine = engine
        self.owns_engine = owns_engine  # close() closes the engine only if this solver made it

    def check(self, messages: list[ChatMessage], config: TTSConfig) -> None:
        self.engine.plan(messages, config)  # scorer capabilities, context length: before any run

    def solve(self, messages: list[ChatMessage], config: TTSConfig, control: RunControl) -> TTSMetadata:
        return self.engine.execute(self.engine.plan(messages, config), control=control).metadata

    def close(self) -> None:
        if self.owns_engine:
            self.engine.close()


class ServiceSolver:
    """Questions sent to an llm-tts service (``base_url`` ends in /v1) with ChatTTS's HTTP mode."""

    def __init__(
        self, base_url: str, *, model: str | None = None, api_key: str | None = None, timeout: float | None = None
    ) -> None:
        from llm_tts.integrations import ChatTTS

        options: dict[str, Any] = {"base_url": base_url, "model": model, "timeout": timeout, "max_retries": 5}
        if api_key:
            options["api_key"] = api_key
        self.llm = ChatTTS(**options)

    def check(self, messages: list[ChatMessage], config: TTSConfig) -> None:
        """The service checks the rest; configurations were checked locally already."""

    def solve(self, messages: list[ChatMessage], config: TTSConfig, control: RunControl) -> TTSMetadata:
        fields = config.model_dump(exclude_unset=True)
        reply = self.llm.invoke([(m.role, m.content) for m in messages], **fields)
        return TTSMetadata.model_validate(reply.response_metadata["tts_metadata"])

    def close(self) -> None:
        self.llm.close()


@dataclass(frozen=True)
class Job:
    question: Question
    configuration: Configuration
    seed: int | None

    @property
    def key(self) -> RowKey:
        return (self.question.id, self.configuration.name, self.seed)


# Fields that change what a run records about itself, not its result: a row done with or without
# them is the same result (``llm-tts eval --no-traces`` resumes a folder written with traces).
OBSERVING_FIELDS = frozenset({"tts_trace"})


def plan_jobs(
    questions: Sequence[Question],
    configurations: Sequence[Configuration],
    seeds: Sequence[int | None],
    done: dict[RowKey, ResultRow],
) -> list[Job]:
    """Jobs not done yet, configuration by configuration (similar work runs side by side).

    A done row recorded with other settings than this run's (say another max_tokens) is refused:
    mixing them would silently corrupt the curves."""
    jobs = []
    for configuration in configurations:
        for seed in seeds:
            config = configuration.tts_config(seed).model_dump(mode="json")
            for question in questions:
                job = Job(question, configuration, seed)
                row = done.get(job.key)
                if row is None:
                    jobs.append(job)
                elif changed := sorted(
                    k
                    for k in (config.keys() | row.config.keys()) - OBSERVING_FIELDS
                    if row.config.get(k) != config.get(k)
                ):
                    # a field absent from an older row is unset there (a field added since, at None)
                    raise InvalidParameterError(
                        "out",
                        str(configuration.name),
                        f"the output folder holds results of {configuration.name} with "
                        f"other settings ({', '.join(changed)}); use a new --out folder",
                    )
    return jobs


def messages_for(question: Question, system_prompt: str | None = REASONING_SYSTEM_PROMPT) -> list[ChatMessage]:
    system = [ChatMessage(role="system", content=system_prompt)] if system_prompt else []
    return [*system, ChatMessage(role="user", content=question.question)]


def run_evaluation(
    questions: Sequence[Question],
    configurations: Sequence[Configuration],
    solver: Solver,
    store: ResultsStore,
    *,
    seeds: Sequence[int | None] = (None,),
    concurrency: int = 4,
    system_prompt: str | None = REASONING_SYSTEM_PROMPT,
    progress: EvalProgress | None = None,
    traces: bool = True,
) -> list[ResultRow]:
    """Run every job not in ``store`` yet and append its row there; returns the new rows.
    ``traces``: each run records its trace (``tts_trace``), which the store keeps beside its row."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidParameterError("concurrency", concurrency, "must be an integer >= 1")
    jobs = plan_jobs(questions, configurations, seeds, store.finished())
    for configuration in configurations:  # what the solver refuses, it refuses before any run
        solver.check(messages_for(questions[0], system_prompt), configuration.tts_config(seeds[0]))
    total = len(questions) * len(configurations) * len(seeds)
    progress = progress or EvalProgress(total, already_done=total - len(jobs))
    return _Pool(solver, system_prompt, concurrency, traces).run(jobs, store, progress)


class _Pool:
    """Worker threads fed from one queue (daemons: an interrupted run waits for them only briefly)."""

    def __init__(self, solver: Solver, system_prompt: str | None, concurrency: int, traces: bool = True) -> None:
        self.solver = solver
        self.traces = traces
        self.system_prompt = system_prompt
        self.concurrency = concurrency
        self.stopping = threading.Event()
        self.controls: list[RunControl] = []  # the runs in flight, cancelled on a stop
        self.lock = threading.Lock()

    def run(self, jobs: list[Job], store: ResultsStore, progress: EvalProgress) -> list[ResultRow]:
        todo: queue.Queue[Job] = queue.Queue()
        for job in jobs:
            todo.put(job)
        finished: queue.Queue[ResultRow | BaseException] = queue.Queue()
        workers = [
            threading.Thread(target=self._work, args=(todo, finished), name="llm-tts-eval", daemon=True)
            for _ in range(min(self.concurrency, len(jobs)))
        ]
        for worker in workers:
            worker.start()
        rows: list[ResultRow] = []
        try:
            while len(rows) < len(jobs):
                try:
                    item = finished.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item  # a bug in the harness itself, not a failed run
                store.append(item)
                rows.append(item)
                progress.update(item)
        finally:
            progress.close()
            self._stop(workers)
        return rows

    def _stop(self, workers: list[threading.Thread]) -> None:
        """Cancel the runs in flight and give them a moment to stop at their next check, so the
        engine is not closed under a running step (a second Ctrl-C stops waiting)."""
        self.stopping.set()
        with self.lock:
            for control in self.controls:
                control.cancel()
        give_up = time.monotonic() + _STOP_WAIT_S
        for worker in workers:
            worker.join(timeout=max(0.0, give_up - time.monotonic()))

    def _work(self, todo: queue.Queue[Job], finished: queue.Queue[ResultRow | BaseException]) -> None:
        while not self.stopping.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                row = self._solve(job)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
                finished.put(e)
                return
            if row is not None:
                finished.put(row)

    def _solve(self, job: Job) -> ResultRow | None:
        config = job.configuration.tts_config(job.seed)
        if self.traces:
            config = config.merged(tts_trace=True)
        control = RunControl()
        with self.lock:
            self.controls.append(control)
        started = time.perf_counter()
        metadata, error = None, None
        try:
            metadata = self.solver.solve(messages_for(job.question, self.system_prompt), config, control)
        except RunCancelledError:
            return None  # interrupted: not a result, it runs again on resume
        except Exception as e:  # noqa: BLE001 - one failed question must not end the evaluation
            error = f"{type(e).__name__}: {e}"
        finally:
            with self.lock:
                self.controls.remove(control)
        if self.stopping.is_set():
            return None
        selected = metadata.selected_answer if metadata else None
        return ResultRow(
            question_id=job.question.id,
            configuration=job.configuration.name,
            strategy=job.configuration.strategy,
            budget=job.configuration.budget,
            seed=job.seed,
            config=config.model_dump(mode="json"),
            gold=job.question.answer,
            selected_answer=selected,
            correct=is_correct(selected, job.question.answer),
            seconds=time.perf_counter() - started,
            metadata=metadata,
            error=error,
        )
