"""Readiness of a server that cannot serve an endpoint; admission control; the body size limit."""

from __future__ import annotations

import asyncio
import logging

import httpx
import numpy as np
import pytest

from conveyor.config import load_settings
from conveyor.serving.app import create_app
from conveyor.serving.catalog import ColumnSpec, EndpointSpec, InMemoryCatalog, ModelKey, Signature, WeightedRoute
from conveyor.serving.edge import Edge
from conveyor.serving.server import build_app
from conveyor.serving.service import ServingService

SIG = Signature((ColumnSpec("a", "float64"),))
READY_ROUTES = ("/v2/health/ready", "/readyz", "/ping", "/health")


class Echo:
    def predict(self, X):
        return np.asarray(X)[:, 0]


def test_an_endpoint_on_a_missing_version_makes_the_server_not_ready(client, run_server, caplog) -> None:
    import tritonclient.http as triton
    from sklearn.dummy import DummyRegressor

    X = np.zeros((4, 1))
    client.registry.register("clf", DummyRegressor().fit(X, X[:, 0]), data=X)
    client.metadata.endpoints.create("good", {"routes": [{"model": "clf:1", "weight": 100}]}, "t")
    client.metadata.endpoints.create("clf-api", {"routes": [{"model": "clf:1", "weight": 90},
                                                            {"model": "clf:2", "weight": 10}]}, "t")
    with caplog.at_level(logging.ERROR, logger="conveyor.serving"):
        server = run_server(build_app(client.settings, access_log=False, prediction_log=False))
    assert any("clf-api" in r.getMessage() and "clf:2" in r.getMessage() for r in caplog.records)
    with httpx.Client(base_url=server.url) as http:
        for path in READY_ROUTES:
            r = http.get(path)
            assert r.status_code == 503, path
            why = r.json()["unserved"]["clf-api"]
            assert "clf:2" in why and r.json()["ready"] is False, path
        r = http.post("/endpoints/clf-api/invocations", json={"instances": [[0.0]]})
        assert r.status_code == 503 and r.json()["field"] == "endpoint" and "clf:2" in r.json()["error"]
        assert http.post("/endpoints/good/invocations", json={"instances": [[0.0]]}).status_code == 200
    assert not triton.InferenceServerClient(url=server.url.removeprefix("http://")).is_server_ready()


def test_a_version_that_fails_to_load_makes_the_server_not_ready(run_server) -> None:
    cat = InMemoryCatalog()
    cat.add_model("m", 1, Echo(), SIG)
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
    cat.set_endpoint(EndpointSpec("broken", (WeightedRoute(ModelKey("m", 3), 100),)))    # m:3 was never stored
    service = ServingService(cat)
    server = run_server(create_app(service, load_settings()))
    r = httpx.get(f"{server.url}/v2/health/ready")
    assert r.status_code == 503 and "m:3 failed to load (KeyError" in r.json()["unserved"]["broken"]
    cat.set_endpoint(EndpointSpec("broken", (WeightedRoute(ModelKey("m", 1), 100),)))    # fixed: ready again
    service.refresh()
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


def test_a_bad_alias_move_keeps_a_running_endpoint_serving_its_last_routes() -> None:
    cat = InMemoryCatalog()
    cat.add_model("m", 1, Echo(), SIG)
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
    service = ServingService(cat)
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 9), 100),)))
    assert service.refresh() and service.ready
    assert service.predict({"a": [5.0]}, endpoint="ep", headers={}, protocol="t").model == ModelKey("m", 1)


def _asgi_get(app, path: str = "/x") -> dict:
    """Call an ASGI app in-process; returns status, headers and body."""
    out: dict = {"body": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], dict(message["headers"])
        else:
            out["body"] += message.get("body", b"")

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    return receive, send, scope, out


def test_admission_sheds_with_503_json_beyond_the_in_flight_limit() -> None:
    import orjson

    service = ServingService(InMemoryCatalog())
    release = asyncio.Event()
    started = []

    async def slow_app(scope, receive, send):
        started.append(1)
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    edge = Edge(slow_app, service, max_in_flight=2)

    async def scenario() -> list[dict]:
        calls = [_asgi_get(edge) for _ in range(5)]
        tasks = [asyncio.ensure_future(edge(scope, receive, send)) for receive, send, scope, _ in calls]
        while len(started) < 2 or sum(1 for *_, out in calls if "status" in out) < 3:
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks)
        return [out for *_, out in calls]

    outs = asyncio.run(scenario())
    assert sorted(o["status"] for o in outs) == [200, 200, 503, 503, 503] and len(started) == 2
    shed = next(o for o in outs if o["status"] == 503)
    body = orjson.loads(shed["body"])
    assert body["field"] == "server" and "CONVEYOR_SERVE_MAX_IN_FLIGHT" in body["error"]
    assert shed["headers"][b"retry-after"] == b"1" and edge.in_flight == 0 and edge.shed == 3
    assert service.metrics.requests.labels("-", "-", "http", "503")._value.get() == 3


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_beyond_the_limit_is_413_json(run_server, chunked) -> None:
    cat = InMemoryCatalog()
    cat.add_model("m", 1, Echo(), SIG)
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
    settings = load_settings().with_overrides(serve_max_body_bytes=1000)
    server = run_server(create_app(ServingService(cat), settings))
    big = b'{"instances": [' + b"[1.0]," * 400 + b"[1.0]]}"
    content = (iter([big[:500], big[500:]]) if chunked else big)
    r = httpx.post(f"{server.url}/invocations", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body" and "1000 bytes" in r.json()["error"]
    small = httpx.post(f"{server.url}/invocations", json={"instances": [[1.0]]})
    assert small.status_code == 200 and small.json() == {"predictions": [1.0]}


def test_the_openapi_description_lists_every_route_even_one_mounted_later(run_server) -> None:
    from starlette.routing import Route

    from conveyor.serving.protocols.base import json_response

    async def action(request):
        return json_response({"done": True})

    app = create_app(ServingService(InMemoryCatalog()), load_settings())
    app.router.routes.append(Route("/registry/actions/{model}", action, methods=["POST"]))
    server = run_server(app)
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert doc["paths"]["/registry/actions/{model}"]["post"]["requestBody"]["content"] == {
        "application/json": {"schema": {}}}
    infer = doc["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["name", "version"]
    assert "inputs" in infer["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(doc["paths"]["/invocations"]["post"]["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert {"/readyz", "/metrics", "/v2/health/ready", "/score", "/predict", "/ping"} <= set(doc["paths"])


def test_two_limiters_on_one_shared_table_share_each_keys_bucket(tmp_path) -> None:
    """Two workers' limiters, as two processes map it: one bucket per key between them."""
    import multiprocessing as mp

    from conveyor.serving.rate_limits import SharedRateLimiter, create_table

    path = create_table(str(tmp_path))
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:      # a limiter in each of two processes takes 5 tokens of a 0.01/s key
        taken = pool.starmap(_take_tokens, [(path, "k1", 5), (path, "k1", 5)])
    assert sum(taken) == 1                 # capacity max(1, 0.01) = 1 token for both processes together
    local = SharedRateLimiter(path)
    assert local.take("k2", 0.01) == 0.0 and local.take("k2", 0.01) > 0   # another key: its own bucket
    local.close()


def _take_tokens(path: str, key: str, n: int) -> int:
    from conveyor.serving.rate_limits import SharedRateLimiter

    limiter = SharedRateLimiter(path)
    return sum(1 for _ in range(n) if limiter.take(key, 0.01) == 0.0)
