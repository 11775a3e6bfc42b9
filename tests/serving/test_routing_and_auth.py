"""Canary split, sticky routing, shadows, auth, rate limits, validation, the prediction log, hot switches."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from scipy.stats import binomtest

from conveyor.config import load_settings
from conveyor.serving.app import create_app
from conveyor.serving.auth import generate_key
from conveyor.serving.catalog import (ApiKey, ColumnSpec, EndpointSpec, InMemoryCatalog, ModelKey, Signature,
                                      WeightedRoute)
from conveyor.serving.prediction_log import PredictionLog, read_prediction_log
from conveyor.serving.service import ServingService

SIG = Signature((ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))


class Constant:
    """Predicts its own version for every row and counts its calls."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.calls = 0

    def predict(self, X):
        self.calls += 1
        return np.full(len(X), self.value)


def catalog_with(versions=(1, 2)) -> tuple[InMemoryCatalog, dict[int, Constant]]:
    cat = InMemoryCatalog()
    models = {v: Constant(v) for v in versions}
    for v, m in models.items():
        cat.add_model("m", v, m, SIG)
    return cat, models


ROW = {"a": [1.0], "b": [2.0]}


def test_canary_split_is_within_statistical_tolerance() -> None:
    cat, _ = catalog_with()
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 90), WeightedRoute(ModelKey("m", 2), 10))))
    svc = ServingService(cat)
    n = 4000
    hits = sum(int(svc.predict(ROW, endpoint="ep", headers={}, protocol="t").values[0] == 2) for _ in range(n))
    assert binomtest(hits, n, 0.10).pvalue > 0.001


def test_sticky_header_keeps_a_caller_on_one_version() -> None:
    cat, _ = catalog_with()
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 50), WeightedRoute(ModelKey("m", 2), 50)),
                                  sticky_header="X-User"))
    svc = ServingService(cat)
    for user in ("alice", "bob", "carol", "dave"):
        seen = {int(svc.predict(ROW, endpoint="ep", headers={"x-user": user}, protocol="t").values[0])
                for _ in range(30)}
        assert len(seen) == 1
    users = {int(svc.predict(ROW, endpoint="ep", headers={"x-user": f"u{i}"}, protocol="t").values[0])
             for i in range(100)}
    assert users == {1, 2}


def test_shadow_answers_are_logged_never_returned(tmp_path, run_server) -> None:
    cat, models = catalog_with()
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),), shadows=(ModelKey("m", 2),)))
    svc = ServingService(cat, prediction_log=PredictionLog(str(tmp_path), interval_s=60))
    server = run_server(create_app(svc, load_settings()))
    with httpx.Client(base_url=server.url) as http:
        ids = []
        for i in range(5):
            r = http.post("/invocations", json={"dataframe_records": [{"a": float(i), "b": 0.0}]})
            assert r.json() == {"predictions": [1]}
            ids.append(r.headers["x-request-id"])
    deadline = time.monotonic() + 10
    while models[2].calls < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    svc.prediction_log.flush()
    table = read_prediction_log(str(tmp_path), "ep").to_pandas()
    main, shadow = table[~table["shadow"]], table[table["shadow"]]
    assert sorted(main["request_id"]) == sorted(ids) == sorted(shadow["request_id"])
    assert set(main["prediction"]) == {1.0} and set(shadow["prediction"]) == {2.0}
    assert sorted(main["feature.a"]) == [0.0, 1.0, 2.0, 3.0, 4.0]


def _keyed(scope="predict", endpoint=None, rate=None):
    cat, models = catalog_with((1,))
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
    cat.set_endpoint(EndpointSpec("other", (WeightedRoute(ModelKey("m", 1), 100),)))
    key_id, key, digest = generate_key()
    cat.add_key(key_id, digest, ApiKey(key_id, scope, endpoint, rate))
    return cat, models, key


def test_auth_missing_wrong_scope_and_endpoint(run_server) -> None:
    cat, models, key = _keyed(endpoint="ep")
    server = run_server(create_app(ServingService(cat), load_settings()))
    body = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
                      {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    with httpx.Client(base_url=server.url) as http:
        r = http.post("/v2/models/ep/infer", json=body)
        assert r.status_code == 401 and "No API key" in r.json()["error"] and r.json()["field"] == "authorization"
        r = http.post("/v2/models/ep/infer", json=body, headers={"Authorization": "Bearer cvk_nope_nope"})
        assert r.status_code == 401
        r = http.post("/v2/models/other/infer", json=body, headers={"X-API-Key": key})
        assert r.status_code == 403 and "limited to endpoint 'ep'" in r.json()["error"]
        assert models[1].calls == 0
        r = http.post("/v2/models/ep/infer", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1]


def test_rate_limit_answers_429_with_retry_after(run_server) -> None:
    cat, _models, key = _keyed(rate=2.0)
    server = run_server(create_app(ServingService(cat), load_settings()))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}) as http:
        codes = [http.post("/v2/models/ep/infer", json={"inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]}]}) for _ in range(6)]
    statuses = [r.status_code for r in codes]
    assert statuses[:2] == [200, 200] and 429 in statuses
    limited = next(r for r in codes if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"dataframe_records": [{"a": 1.0}]}, "b", "Missing column 'b'"),
    ({"dataframe_records": [{"a": 1.0, "b": "high"}]}, "b", "expects float64, got str 'high'"),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0, 3.0]]}}, "dataframe_split.data[0]",
     "has 3 values; expected 2"),
    ({"nothing": 1}, "body", "none of the known keys"),
])
def test_bad_requests_name_the_field_and_never_reach_the_model(run_server, body, field, message) -> None:
    cat, models = catalog_with((1,))
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
    server = run_server(create_app(ServingService(cat), load_settings()))
    with httpx.Client(base_url=server.url) as http:
        r = http.post("/invocations", json=body)
        bad_json = http.post("/invocations", content=b"{oops", headers={"content-type": "application/json"})
        bad_shape = http.post("/v2/models/ep/infer", json={"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0]}]})
    assert r.status_code == 400 and r.json()["field"] == field and message in r.json()["error"]
    assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
    assert "not valid JSON" in bad_json.json()["error"]
    assert bad_shape.status_code == 400 and bad_shape.json()["field"] == "inputs[0].shape"
    assert "shape [2] needs 2" in bad_shape.json()["error"]
    assert models[1].calls == 0


def test_hot_switch_under_load_fails_no_request(run_server) -> None:
    cat, _ = catalog_with()
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
    svc = ServingService(cat, poll_s=0.1)
    server = run_server(create_app(svc, load_settings()))
    results: list[tuple[int, int]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url) as http:
            while not stop.is_set():
                r = http.post("/invocations", json={"dataframe_records": [{"a": 1.0, "b": 1.0}]})
                results.append((r.status_code, r.json()["predictions"][0] if r.status_code == 200 else -1))

    def wait_until(condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what} ({len(results)} answers so far)"
            time.sleep(0.01)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        wait_until(lambda: len(results) >= 20, "answers from version 1")     # load before the switch
        cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 2), 100),)))   # the alias moves
        wait_until(lambda: any(v == 2 for _, v in results), "the first answer from version 2")
        # Enough answers after the switch for "it stays switched" to mean something.
        wait_until(lambda: len(results) - [v for _, v in results].index(2) >= 40, "answers after the switch")
        stop.set()
        for f in futures:
            f.result()
    assert results and all(code == 200 for code, _ in results)
    versions = [v for _, v in results]
    assert versions[0] == 1 and versions[-1] == 2
    first_two = versions.index(2)
    assert first_two >= 20 and len(versions) - first_two >= 40
    assert all(v == 2 for v in versions[first_two + 8:])   # once switched, it stays switched


def test_prediction_log_overflow_drops_and_counts(tmp_path) -> None:
    dropped = []
    log = PredictionLog(str(tmp_path), max_rows=3, interval_s=60, on_drop=dropped.append)
    for i in range(5):
        log.record(request_id=str(i), ts=time.time(), endpoint="e", model="m", version=1, shadow=False,
                   latency_ms=1.0, columns={"a": np.array([1.0])}, prediction=np.array([0.5]))
    log.close()
    assert log.dropped_rows == 2 and dropped == [1, 1]
    table = read_prediction_log(str(tmp_path), "e")
    assert sorted(table.column("request_id").to_pylist()) == ["0", "1", "2"]
