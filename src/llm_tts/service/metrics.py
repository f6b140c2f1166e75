"""Prometheus metrics of one app (``GET /metrics``, behind the same API key as ``/v1``).

Each app has its own ``CollectorRegistry``, so several apps in one process never share or
collide. :class:`MetricsMiddleware` opens a :class:`RequestObservation` for every chat or text
completion (top-level and session-scoped routes); the serving code fills it in as the request
goes (its strategy, its result, when its answer was ready), and the middleware records it once
the response has ended, whatever its status. Running and queued requests and the engine's own
statistics are read when scraped, so they cost nothing between scrapes.

Time to first token is the time until the answer's content is ready to send: a search picks its
answer only when it ends, so for a non-streamed request it is the whole run, and a stream's
progress events do not count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_tts.engine import TTSResult

UNKNOWN_STRATEGY = "unknown"  # the request failed before its strategy was known (e.g. a bad body)
# chat completions (.../chat/completions) and text completions (.../v1/completions)
COMPLETION_PATH_SUFFIXES = ("/chat/completions", "/v1/completions")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
SANDBOX_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class RequestObservation:
    """What one completion request did, filled in while it is served."""

    started: float = field(default_factory=time.perf_counter)
    strategy: str = UNKNOWN_STRATEGY
    first_token_s: float | None = None
    result: TTSResult | None = None
    recorded: bool = False  # a session recorded it

    def answered(self, result: TTSResult, *, recorded: bool) -> None:
        """The run's answer is built and about to be sent."""
        self.first_token_s = time.perf_counter() - self.started
        self.result = result
        self.recorded = recorded


observation_var: ContextVar[RequestObservation | None] = ContextVar("llm_tts_request_observation", default=None)


def current_observation() -> RequestObservation | None:
    """The completion being observed in this context (None outside one, or without metrics)."""
    return observation_var.get()


class ServiceMetrics:
    """The app's registry and its metrics; ``record`` takes one finished request."""

    def __init__(self, live: Callable[[], LiveState | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_tts_requests",
            "completion requests (chat and text) by strategy and HTTP status",
            ["strategy", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "llm_tts_request_duration_seconds",
            "completion wall time until the response ended, by strategy",
            ["strategy"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "llm_tts_time_to_first_token_seconds",
            "time until the answer's content was ready to send, by strategy (a search answers when it ends)",
            ["strategy"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llm_tts_tokens",
            "tokens by kind: prompt, generated (every candidate's, pruned too), thinking (of generated), "
            "injected (code outputs, not sampled), computed_prompt (prompt tokens of every backend call) and "
            "cached_prompt (of those, served from the prefix cache), scorer (run by the scorer's model)",
            ["strategy", "kind"],
            registry=r,
        )
        self.flops = Counter(
            "llm_tts_estimated_flops",
            "estimated floating-point operations of the runs (2 x parameters x tokens computed; see tts_metadata.cost)",
            ["strategy"],
            registry=r,
        )
        self.steps = Counter("llm_tts_steps", "reasoning steps of the returned answers", ["strategy"], registry=r)
        self.early_stops = Counter(
            "llm_tts_early_stops",
            "runs that ended before their full size, by reason",
            ["strategy", "reason"],
            registry=r,
        )
        self.sandbox_runs = Counter(
            "llm_tts_sandbox_executions", "code blocks by how they ended (limit: not run)", ["status"], registry=r
        )
        self.sandbox_seconds = Histogram(
            "llm_tts_sandbox_execution_seconds", "wall time of code blocks run", buckets=SANDBOX_BUCKETS, registry=r
        )
        self.session_records = Counter("llm_tts_session_records", "completions recorded in sessions", registry=r)
        r.register(_LiveCollector(live))

    def record(self, seen: RequestObservation, status: int) -> None:
        strategy = seen.strategy
        self.requests.labels(strategy, str(status)).inc()
        self.latency.labels(strategy).observe(time.perf_counter() - seen.started)
        if seen.first_token_s is not None:
            self.first_token.labels(strategy).observe(seen.first_token_s)
        if seen.recorded:
            self.session_records.inc()
        if seen.result is not None:
            self._record_run(strategy, seen.result)

    def _record_run(self, strategy: str, result: TTSResult) -> None:
        meta = result.metadata
        usage = meta.usage
        self.tokens.labels(strategy, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(strategy, "generated").inc(usage.completion_tokens)
        self.tokens.labels(strategy, "thinking").inc(usage.completion_tokens_details.reasoning_tokens)
        cost = meta.cost
        self.tokens.labels(strategy, "injected").inc(cost.injected_tokens)
        self.tokens.labels(strategy, "computed_prompt").inc(cost.prompt_tokens)
        self.tokens.labels(strategy, "cached_prompt").inc(cost.cached_prompt_tokens)
        self.tokens.labels(strategy, "scorer").inc(cost.scorer_tokens)
        if cost.flops is not None:
            self.flops.labels(strategy).inc(cost.flops)
        self.steps.labels(strategy).inc(meta.reasoning_steps)
        if meta.stopped_by != "complete":
            self.early_stops.labels(strategy, meta.stopped_by).inc()
        executions = {id(e): e for c in meta.candidates for e in c.code_executions}  # shared blocks ran once
        for e in executions.values():
            self.sandbox_runs.labels(e.status).inc()
            if e.status != "limit":
                self.sandbox_seconds.observe(e.seconds)


@dataclass(frozen=True)
class LiveState:
    """What is read at scrape time: runs holding a slot, requests queued for one, the engine's statistics."""

    running: int
    queued: int
    engine_stats: Callable[[], dict[str, int | float]] | None = None


class _LiveCollector(Collector):
    def __init__(self, live: Callable[[], LiveState | None]) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        state = self._live()
        if state is None:  # not started yet
            return
        yield GaugeMetricFamily("llm_tts_requests_running", "requests holding a run slot", value=state.running)
        yield GaugeMetricFamily("llm_tts_requests_queued", "requests waiting for a run slot", value=state.queued)
        if state.engine_stats is None:
            return
        stats = state.engine_stats()
        yield GaugeMetricFamily(
            "llm_tts_engine_prefix_cache_hit_rate",
            "share of prompt tokens the engine served from its prefix cache since start-up",
            value=float(stats.get("hit_rate", 0.0)),
        )
        if "kv_cache_usage" in stats:
            yield GaugeMetricFamily(
                "llm_tts_engine_kv_cache_usage",
                "share of the KV cache in use at the engine's last step",
                value=float(stats["kv_cache_usage"]),
            )


class MetricsMiddleware:
    """Observes every completion request and records it when its response has ended."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(COMPLETION_PATH_SUFFIXES):
            await self.app(scope, receive, send)
            return
        seen = RequestObservation()
        observation_var.set(seen)  # this request's task only
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.record(seen, status)
