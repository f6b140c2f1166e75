"""OpenTelemetry spans of requests and runs: the ``otel`` extra, and free without it.

This is the one module that imports opentelemetry, lazily: where it is not installed, :func:`span`
hands back one shared no-op context and :func:`open_span` one shared no-op handle, so the
instrumented call sites (a service request, a run's plan and run, each step, each backend call,
scorer call and sandbox execution) cost a function call. Where it is installed, spans go to the
tracer provider the application installed (``opentelemetry-instrument``, or its own SDK set-up),
or to the one :func:`configure_from_environment` builds from the standard ``OTEL_*`` variables;
with neither, the API's default provider drops them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

SERVICE_NAME = "llm-tts"  # the resource's service.name unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say
Attribute = str | bool | int | float


class Span:
    """A started span (or nothing, without opentelemetry): attributes can be added until it ends."""

    __slots__ = ("_span", "_token")

    def __init__(self, otel_span: Any = None, token: Any = None) -> None:
        self._span = otel_span
        self._token = token  # set when this span was made current by open_span

    def set(self, attributes: Mapping[str, Attribute | None]) -> None:
        """Add attributes (None values are left out: OpenTelemetry has no null)."""
        if self._span is not None:
            self._span.set_attributes(_clean(attributes))

    def end(self) -> None:
        """End a span from :func:`open_span` and restore the context it replaced."""
        if self._span is None:
            return
        if self._token is not None:
            from opentelemetry import context

            context.detach(self._token)
            self._token = None
        self._span.end()
        self._span = None


NO_SPAN = Span()
_NO_SPAN_CONTEXT = nullcontext(NO_SPAN)
_tracer: Any = None  # None: not looked up yet; False: opentelemetry is not installed
_provider: Any = None  # a provider set by use_tracer_provider; None: the global one


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = False
        else:
            source = trace if _provider is None else _provider
            _tracer = source.get_tracer("llm_tts")
    return _tracer


def span(name: str, attributes: Mapping[str, Attribute | None] | None = None) -> AbstractContextManager[Span]:
    """A span over a with-block, the current span's child and the current one inside it; an
    exception leaving the block is recorded on it and marks it as an error."""
    tracer = _get_tracer()
    if not tracer:
        return _NO_SPAN_CONTEXT
    return _current_span(tracer, name, attributes or {})


@contextmanager
def _current_span(tracer: Any, name: str, attributes: Mapping[str, Attribute | None]) -> Iterator[Span]:
    with tracer.start_as_current_span(name, attributes=_clean(attributes)) as otel_span:
        yield Span(otel_span)


def open_span(name: str, attributes: Mapping[str, Attribute | None] | None = None) -> Span:
    """A span started now and made current until :meth:`Span.end`, which must run in the same
    thread (for work that a with-block cannot hold: a step that ends at its progress report)."""
    tracer = _get_tracer()
    if not tracer:
        return NO_SPAN
    from opentelemetry import context, trace

    otel_span = tracer.start_span(name, attributes=_clean(attributes or {}))
    return Span(otel_span, context.attach(trace.set_span_in_context(otel_span)))


def use_tracer_provider(provider: Any) -> None:
    """Send spans to ``provider`` instead of the global one (None: back to the global one); for
    tests and embedders that keep their own SDK provider."""
    global _tracer, _provider
    _provider, _tracer = provider, None


def _clean(attributes: Mapping[str, Attribute | None]) -> dict[str, Attribute]:
    return {key: value for key, value in attributes.items() if value is not None}


# -- exporters from the standard environment ---------------------------------------------------
def configure_from_environment() -> bool:
    """Install an SDK tracer provider that exports as the ``OTEL_*`` environment says; True when
    it did. Nothing happens when no exporter is asked for (neither ``OTEL_TRACES_EXPORTER`` nor an
    ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is set), under ``OTEL_SDK_DISABLED=true``, or when an SDK
    provider is installed already (``opentelemetry-instrument``, the application's own).

    ``OTEL_TRACES_EXPORTER`` names the exporters (``otlp``, the default when only an endpoint is
    set; ``console``; ``none``; any installed ``opentelemetry_traces_exporter`` entry point), and
    ``otlp`` speaks ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``
    (``grpc``, the Python SDK's default, or ``http/protobuf``). The SDK reads everything else
    itself: endpoint, headers, timeout and compression (``OTEL_EXPORTER_OTLP_*``), resource
    (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), sampler (``OTEL_TRACES_SAMPLER``) and
    batching (``OTEL_BSP_*``).
    """
    env = os.environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    names = env.get("OTEL_TRACES_EXPORTER") or ("otlp" if endpoint else "")
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or not names.strip():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for span exporters but OpenTelemetry is not installed: pip install 'llm-tts[otel]'")
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return False
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for name in (n.strip().lower() for n in names.split(",")):
        if name and name != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    return True


def _exporter(name: str) -> Any:
    if name == "otlp":
        protocol = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        )
        name = "otlp_proto_http" if protocol.strip() == "http/protobuf" else "otlp_proto_grpc"
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        from llm_tts.errors import InvalidParameterError

        raise InvalidParameterError(
            "OTEL_TRACES_EXPORTER", name, "no such span exporter is installed (pip install 'llm-tts[otel]' has otlp)"
        )
    return next(iter(found)).load()()
