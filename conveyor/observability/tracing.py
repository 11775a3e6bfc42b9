"""OpenTelemetry traces: a span per run and per step, a span per server request.

Nothing is traced, and nothing of OpenTelemetry is imported, unless ``conveyor[otel]`` is
installed and either an OTLP endpoint is configured (``CONVEYOR_OTEL_ENDPOINT`` or the
``OTEL_EXPORTER_OTLP_*`` variables: Conveyor then installs the SDK's provider with a batching OTLP
over HTTP exporter) or the process set a tracer provider of its own (which Conveyor then uses as it
is, e.g. an in-memory exporter in tests, or a provider the host application configured).

Spans:
- ``conveyor.run``   run id, pipeline, executor; its status when it ends;
- ``conveyor.step``  a child of the run: node, step, attempts, cache hit, executor, status;
  a reused (cached, resumed) step is a span of no length with ``conveyor.cache_hit``;
- ``conveyor.request`` (server) method, route path, protocol, endpoint, version, model time;
  an incoming W3C ``traceparent`` makes it a child of the caller's span.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("conveyor.tracing")

_UNSET = object()
_tracer: Any = _UNSET
_lock = threading.Lock()


def tracer() -> Any:
    """The tracer to use, or None when tracing is off (decided once per process)."""
    global _tracer
    if _tracer is _UNSET:
        with _lock:
            if _tracer is _UNSET:
                _tracer = _make_tracer()
    return _tracer


def use_provider(provider: Any) -> None:
    """Trace to ``provider`` (an SDK ``TracerProvider``) in this process, without making it global."""
    from conveyor import __version__

    global _tracer
    with _lock:
        _tracer = provider.get_tracer("conveyor", __version__)


def reset() -> None:
    """Decide again on next use (after the environment or the tracer provider changed)."""
    global _tracer
    with _lock:
        _tracer = _UNSET


def _make_tracer() -> Any:
    from conveyor.config import load_tracing_settings

    settings = load_tracing_settings()
    if not settings.endpoint and "opentelemetry.trace" not in sys.modules:
        return None          # no endpoint, and nothing in this process set up OpenTelemetry
    try:
        from opentelemetry import trace
    except ImportError:
        if settings.endpoint:
            log.warning("Tracing to %s needs OpenTelemetry: pip install 'conveyor[otel]'. No spans are sent.",
                        settings.endpoint)
        return None
    from conveyor import __version__

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return trace.get_tracer("conveyor", __version__)       # the host set a provider: use it as it is
    if not settings.endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("Tracing to %s needs the OpenTelemetry SDK and its OTLP exporter: pip install 'conveyor[otel]'. "
                    "No spans are sent.", settings.endpoint)
        return None
    endpoint = settings.endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("conveyor", __version__)


@contextmanager
def run_span(run_id: str, pipeline: str, executor: str) -> Iterator[Any]:
    """A span around one run's walk; yields the engine observer that adds its step spans (or None)."""
    t = tracer()
    if t is None:
        yield None
        return
    from opentelemetry import trace

    with t.start_as_current_span("conveyor.run", attributes={
            "conveyor.run_id": run_id, "conveyor.pipeline": pipeline, "conveyor.executor": executor}) as span:
        steps = StepSpans(t, trace.set_span_in_context(span), run_id, executor)
        try:
            yield steps
        except BaseException as exc:
            span.set_attribute("conveyor.status", "failed")
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
            steps.close("cancelled")
            raise
        span.set_attribute("conveyor.status", steps.status)
        if steps.status == "failed":
            span.set_status(trace.Status(trace.StatusCode.ERROR, "a step failed"))
        steps.close("unfinished")


class StepSpans:
    """An engine observer: opens a step's span when it starts, ends it with the step's outcome."""

    _REUSED = ("cached", "resumed")

    def __init__(self, t: Any, parent: Any, run_id: str, executor: str) -> None:
        self._tracer, self._parent, self._run_id, self._executor = t, parent, run_id, executor
        self._open: dict[str, Any] = {}
        self.status = "succeeded"

    def __call__(self, event: str, node: str, info: Mapping[str, Any]) -> None:
        if event == "running":
            self._open[node] = self._start(node)
        elif event in ("succeeded", "failed") and not info.get("map"):
            span = self._open.pop(node, None) or self._start(node)
            span.set_attribute("conveyor.status", event)
            span.set_attribute("conveyor.cache_hit", False)
            if "attempts" in info:
                span.set_attribute("conveyor.attempts", int(info["attempts"]))
            if event == "failed":
                from opentelemetry import trace

                self.status = "failed"
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(info.get("error") or "failed")[:500]))
            span.end()
        elif event in self._REUSED:
            span = self._start(node)
            span.set_attribute("conveyor.status", event)
            span.set_attribute("conveyor.cache_hit", True)
            span.end()

    def _start(self, node: str) -> Any:
        return self._tracer.start_span("conveyor.step", context=self._parent, attributes={
            "conveyor.run_id": self._run_id, "conveyor.node": node, "conveyor.step": node.split("[", 1)[0],
            "conveyor.executor": self._executor})

    def close(self, status: str) -> None:
        for span in self._open.values():
            span.set_attribute("conveyor.status", status)
            span.end()
        self._open.clear()


def chain(*observers: Any) -> Any:
    """One observer calling each given one (None entries left out)."""
    present = [o for o in observers if o is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def both(event: str, node: str, info: Mapping[str, Any]) -> None:
        for o in present:
            o(event, node, info)
    return both


# --- the server's side ------------------------------------------------------------------------

def request_span(scope: Mapping[str, Any]) -> Any:
    """A started ``conveyor.request`` span for an ASGI request, child of its ``traceparent``; None when off."""
    t = tracer()
    if t is None:
        return None
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    return t.start_span("conveyor.request", context=extract(carrier), kind=trace.SpanKind.SERVER, attributes={
        "http.request.method": scope.get("method", ""), "url.path": scope.get("path", "")})


def annotate(**attributes: Any) -> None:
    """Add attributes to the current request's span (a no-op when tracing is off)."""
    if _tracer is None or _tracer is _UNSET:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"conveyor.{k}": v for k, v in attributes.items() if v is not None})


class TracingMiddleware:
    """Outermost ASGI middleware of the server when tracing is on: one span per HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:      # the app's own attributes (state, routes) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        span = request_span(scope) if scope["type"] == "http" else None
        if span is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(span))
        status = 0

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, capture)
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500 or status == 0:
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {status or 'no answer'}"))
            span.end()
            context.detach(token)


def traced_app(app: Any) -> Any:
    """``app`` wrapped in the tracing middleware when tracing is on, else ``app`` itself."""
    return TracingMiddleware(app) if tracer() is not None else app
