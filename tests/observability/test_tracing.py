"""OpenTelemetry traces, checked with the SDK's in-memory exporter and a real OTLP/HTTP receiver."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import conveyor as cv
from conveyor.observability import tracing
from conveyor.serving.server import build_app
from tests.serving.conftest import fitted_pipeline, run_server  # noqa: F401  (a fixture)

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


@cv.step
def numbers(n: int) -> list[int]:
    return list(range(n))


@cv.step
def square(x: int) -> int:
    return x * x


@cv.step
def total(values: list[int]) -> int:
    return sum(values)


@cv.pipeline
def traced(n: int = 3):
    total(square.map(x=numbers(n)))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.reset()


def test_a_run_is_a_span_with_a_child_span_per_step_and_cache_hits_marked(client, spans) -> None:
    first = traced.run(client=client)
    second = traced.run(client=client)
    by_run: dict[str, list] = {}
    for s in spans.get_finished_spans():
        by_run.setdefault(s.attributes["conveyor.run_id"], []).append(s)
    for run, cached in ((first, False), (second, True)):
        found = by_run[run.id]
        root = next(s for s in found if s.name == "conveyor.run")
        assert root.attributes["conveyor.pipeline"] == "traced" and root.attributes["conveyor.status"] == "succeeded"
        steps = {s.attributes["conveyor.node"]: s for s in found if s.name == "conveyor.step"}
        assert set(steps) == {"numbers", "square[0]", "square[1]", "square[2]", "total"}
        assert all(s.parent.span_id == root.context.span_id and s.context.trace_id == root.context.trace_id
                   for s in steps.values())
        assert {s.attributes["conveyor.cache_hit"] for s in steps.values()} == {cached}
        assert steps["total"].attributes["conveyor.executor"] == "thread"
    assert by_run[first.id][0].context.trace_id != by_run[second.id][0].context.trace_id


def test_a_failed_step_marks_its_span_and_the_run_as_errors(client, spans) -> None:
    @cv.step
    def broken(x: int) -> int:
        raise ValueError(f"bad {x}")

    @cv.pipeline
    def failing():
        broken(1)

    with pytest.raises(cv.ConveyorError):
        failing.run(client=client)
    found = {s.name: s for s in spans.get_finished_spans()}
    assert found["conveyor.step"].attributes["conveyor.status"] == "failed"
    assert "bad 1" in found["conveyor.step"].status.description
    assert not found["conveyor.run"].status.is_ok


def test_a_request_is_a_server_span_continuing_the_callers_trace(client, run_server, spans) -> None:
    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, data=X)
    client.registry.set_alias("churn", "staging", v.version)
    client.metadata.endpoints.create("churn-api", {"routes": [{"model": "churn@staging", "weight": 100}],
                                                   "shadows": [], "sticky_header": None}, "test")
    server = run_server(build_app(client.settings, access_log=False))
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    rows = X.head(3).to_dict(orient="records")
    with httpx.Client(base_url=server.url) as http:
        ok = http.post("/invocations", json={"dataframe_records": rows},
                       headers={"traceparent": f"00-{trace_id}-{parent}-01"})
        bad = http.post("/invocations", json={"dataframe_records": [{"nope": 1}]})
    assert ok.status_code == 200 and bad.status_code in (400, 422)
    requests = [s for s in spans.get_finished_spans() if s.name == "conveyor.request"]
    served = next(s for s in requests if s.attributes["http.response.status_code"] == 200)
    assert format(served.context.trace_id, "032x") == trace_id and format(served.parent.span_id, "016x") == parent
    assert served.attributes["conveyor.endpoint"] == "churn-api" and served.attributes["conveyor.version"] == 1
    assert served.attributes["conveyor.rows"] == 3 and served.attributes["conveyor.model_ms"] > 0
    refused = next(s for s in requests if s.attributes["http.response.status_code"] == bad.status_code)
    assert refused.parent is None          # no traceparent: a trace of its own


def test_tracing_is_off_and_costs_nothing_without_an_endpoint(client) -> None:
    tracing.reset()
    assert tracing.tracer() is None
    assert type(build_app(client.settings, access_log=False)).__name__ == "Starlette"   # not wrapped


class _Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[tuple[str, str, int]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.posts.append((self.path, self.headers.get("content-type", ""), len(body)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.mark.slow
def test_with_an_endpoint_spans_are_exported_over_otlp_http(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = tmp_path / "run.py"
        script.write_text(
            "import conveyor as cv\n"
            "from conveyor.runtime.client import Client\n"
            "@cv.step\ndef one() -> int:\n    return 1\n"
            "@cv.pipeline\ndef p():\n    one()\n"
            "p.run(client=Client())\n"
            "from opentelemetry import trace\ntrace.get_tracer_provider().shutdown()\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "OTEL_"))}
        env.update(CONVEYOR_HOME=str(tmp_path / "home"), CONVEYOR_OTEL_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   OTEL_SERVICE_NAME="trainer")
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
    assert _Receiver.posts and all(p == "/v1/traces" and t == "application/x-protobuf" and n > 0
                                   for p, t, n in _Receiver.posts)
