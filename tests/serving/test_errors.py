"""Malformed requests on every protocol: a 4xx JSON body naming the field, an access-log line with the
request id, a count in /metrics; a 5xx only when the model raises (or a route fails), also JSON, logged, counted."""

from __future__ import annotations

import io
import logging

import httpx
import numpy as np
import orjson
import pytest
from starlette.requests import Request
from starlette.routing import Route

from conveyor.config import load_settings
from conveyor.serving.access_log import AccessLog
from conveyor.serving.app import create_app
from conveyor.serving.catalog import ColumnSpec, EndpointSpec, InMemoryCatalog, ModelKey, Signature, WeightedRoute
from conveyor.serving.server import build_app
from conveyor.serving.service import ServingService
from tests.serving.conftest import fitted_pipeline

SIG = Signature((ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))


class Recorder:
    """Predicts the first column, counts its calls; raises when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def predict(self, X):
        self.calls += 1
        if self.fail:
            raise RuntimeError("weights are corrupt")
        return np.asarray(X)[:, 0]


class Served:
    """A real server over an in-memory catalog, with its access log captured."""

    def __init__(self, run_server, fail: bool = False, extra_routes=None) -> None:
        self.model = Recorder(fail)
        cat = InMemoryCatalog()
        cat.add_model("m", 1, self.model, SIG)
        cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 100),)))
        self.stream = io.StringIO()
        self.service = ServingService(cat, access_log=AccessLog(self.stream, interval_s=60))
        self.server = run_server(create_app(self.service, load_settings(), extra_routes=extra_routes))
        self.http = httpx.Client(base_url=self.server.url)

    def log_lines(self) -> list[dict]:
        self.service.access_log.flush()
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines()]

    def metric(self, code: int, protocol: str, endpoint: str = "ep", version: str = "-") -> float:
        text = self.http.get("/metrics").text
        want = f'conveyor_requests_total{{code="{code}",endpoint="{endpoint}",protocol="{protocol}",version="{version}"}} '
        line = next((x for x in text.splitlines() if x.startswith(want)), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0


def _tensor(name, datatype, data, shape=None):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


# (protocol label, method, path, request kwargs, status, field, words in the error)
CASES = [
    ("oip_v2", "/v2/models/ep/infer", {"json": {"inputs": [_tensor("a", "FP64", ["high"]), _tensor("b", "FP64", [1.0])]}},
     400, "inputs[0].data", "numbers only, got str 'high'"),
    ("oip_v2", "/v2/models/ep/infer", {"json": {"inputs": [_tensor("a", "FP64", [None]), _tensor("b", "FP64", [1.0])]}},
     400, "inputs[0].data", "got null"),
    ("oip_v2", "/v2/models/ep/infer", {"json": {"inputs": [_tensor("a", "INT64", [1.5]), _tensor("b", "FP64", [1.0])]}},
     400, "inputs[0].data", "whole numbers"),
    ("oip_v2", "/v2/models/ep/infer", {"json": {"inputs": [{"name": "a", "shape": "x", "datatype": "FP64"}]}},
     400, "inputs[0].shape", "list of whole numbers"),
    ("oip_v2", "/v2/models/ep/infer", {"json": {"inputs": [7]}}, 400, "inputs[0]", "must be an object"),
    ("oip_v2", "/v2/models/ep/infer", {"json": [1, 2]}, 400, "body", "JSON object"),
    ("oip_v2", "/v2/models/ep/infer", {"content": b"{\"inputs\": [", "headers": {"content-type": "application/json"}},
     400, "body", "not valid JSON"),
    ("oip_v2", "/v2/models/ep/infer", {"content": b"\x00\x01garbage",
                                       "headers": {"inference-header-content-length": "99"}},
     400, "inference-header-content-length", "whole number of bytes"),
    ("oip_v2", "/v2/models/ep/versions/x/infer", {"json": {"inputs": [_tensor("a", "FP64", [1.0])]}},
     400, "version", "must be a number"),
    ("sagemaker", "/invocations", {"json": {"dataframe_records": [{"a": 1.0, "b": "high"}]}},
     400, "b", "expects float64, got str 'high'"),
    ("sagemaker", "/invocations", {"json": {"dataframe_records": [{"a": 1.0, "b": None}]}}, 400, "b", "null"),
    ("sagemaker", "/invocations", {"json": {"instances": [[[1.0], [2.0]], [[3.0], 4.0]]}}, 400, "a", "not nested"),
    ("sagemaker", "/invocations", {"content": b"1.0,abc\n", "headers": {"content-type": "text/csv"}},
     400, "b", "expects float64"),
    ("sagemaker", "/invocations", {"content": b"1,2", "headers": {"content-type": "image/png"}},
     400, "content-type", "is not accepted"),
    ("mlflow", "/invocations", {"json": {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0]]}}},
     400, "dataframe_split.data[0]", "has 1 values; expected 2"),
    ("vertex", "/predict", {"json": {"rows": [[1.0, 2.0]]}}, 400, "instances", "{\"instances\""),
    ("vertex", "/predict", {"content": b'{"instances": [[1.0, NaN]]}', "headers": {"content-type": "application/json"}},
     400, "body", "not valid JSON"),
    ("vertex", "/predict", {"content": b'{"instances": [[1.0, 1e400]]}', "headers": {"content-type": "application/json"}},
     400, "body", "infinity"),
    ("azureml", "/score", {"json": {"data": [{"a": 1.0, "b": [1, 2]}]}}, 400, "b", "not nested lists"),
    ("azureml", "/score", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "body",
     "not valid JSON"),
]


@pytest.mark.parametrize(("protocol", "path", "kwargs", "status", "field", "words"), CASES,
                         ids=[f"{c[0]}-{c[5]}-{i}" for i, c in enumerate(CASES)])
def test_a_malformed_request_is_json_logged_and_counted(run_server, protocol, path, kwargs, status, field,
                                                        words) -> None:
    s = Served(run_server)
    label = "sagemaker" if protocol == "mlflow" else protocol      # MLflow's /invocations is the SageMaker route
    if "json" in kwargs:
        kwargs = {"content": orjson.dumps(kwargs["json"]),
                  "headers": {"content-type": "application/json"}}
    before = s.metric(status, label)
    r = s.http.post(path, headers={**kwargs.pop("headers", {}), "x-request-id": f"req-{protocol}"}, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["field"] == field and words in body["error"] and body["request_id"] == f"req-{protocol}"
    assert s.metric(status, label) == before + 1
    line = next(x for x in s.log_lines() if x.get("request_id") == f"req-{protocol}")
    assert line["status"] == status and line["protocol"] == label and line["endpoint"] == "ep"
    assert s.model.calls == 0


def test_a_model_that_raises_is_a_json_500_logged_and_counted(run_server, caplog) -> None:
    s = Served(run_server, fail=True)
    with caplog.at_level(logging.ERROR, logger="conveyor.serving"):
        r = s.http.post("/v2/models/ep/infer", headers={"x-request-id": "boom-1"},
                        json={"inputs": [_tensor("a", "FP64", [1.0]), _tensor("b", "FP64", [2.0])]})
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "Model m:1 raised RuntimeError: weights are corrupt", "field": "model",
                        "request_id": "boom-1"}
    assert s.metric(500, "oip_v2", version="1") == 1
    assert any("boom-1" in rec.getMessage() and rec.exc_info for rec in caplog.records)
    line = next(x for x in s.log_lines() if x.get("request_id") == "boom-1")
    assert line["status"] == 500 and line["error"] == "PredictionFailed"


def test_an_unexpected_error_in_any_route_is_a_json_500_at_the_edge(run_server, caplog) -> None:
    async def broken(request: Request):
        raise KeyError("not a ConveyorError")

    s = Served(run_server, extra_routes=[Route("/broken", broken, methods=["GET"])])
    with caplog.at_level(logging.ERROR, logger="conveyor.serving"):
        r = s.http.get("/broken", headers={"x-request-id": "edge-1"})
    assert r.status_code == 500 and r.json()["field"] == "server" and r.json()["request_id"] == "edge-1"
    assert "KeyError" in r.json()["error"]
    assert s.metric(500, "http", endpoint="-") == 1
    assert any("edge-1" in rec.getMessage() and rec.exc_info for rec in caplog.records)
    assert next(x for x in s.log_lines() if x.get("request_id") == "edge-1")["status"] == 500


def test_unknown_paths_and_methods_answer_json(run_server) -> None:
    s = Served(run_server)
    r = s.http.get("/nope")
    assert r.status_code == 404 and r.json()["field"] == "path" and "/openapi.json" in r.json()["error"]
    r = s.http.get("/invocations")
    assert r.status_code == 405 and r.json()["field"] == "method"
    assert s.metric(404, "http", endpoint="-") == 1 and s.metric(405, "http", endpoint="-") == 1


def test_invented_endpoint_names_do_not_grow_the_metrics(run_server) -> None:
    s = Served(run_server)
    for i in range(20):
        assert s.http.post(f"/v2/models/x{i}/infer", json={"inputs": []}).status_code == 404
    text = s.http.get("/metrics").text
    assert "x1" not in text and s.metric(404, "oip_v2", endpoint="-") == 20


def test_a_versioned_request_is_validated_against_that_versions_signature(run_server) -> None:
    cat = InMemoryCatalog()
    v1, v2 = Recorder(), Recorder()
    cat.add_model("m", 1, v1, SIG)
    cat.add_model("m", 2, v2, Signature(tuple(ColumnSpec(c, "float64") for c in "cde")))
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 90), WeightedRoute(ModelKey("m", 2), 10))))
    server = run_server(create_app(ServingService(cat), load_settings()))
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [[7.0, 8.0, 9.0]]}]}
    r = httpx.post(f"{server.url}/v2/models/ep/versions/2/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "2" and r.json()["outputs"][0]["data"] == [7.0]
    assert (v1.calls, v2.calls) == (0, 1)
    r = httpx.post(f"{server.url}/v2/models/ep/versions/1/infer", json=body)
    assert r.status_code == 400 and r.json()["field"] == "inputs[0].shape" and "['a', 'b']" in r.json()["error"]


def test_registry_model_rejects_a_string_and_a_null_in_an_fp64_tensor(client, run_server) -> None:
    """The reported case: a scikit-learn pipeline behind OIP v2, a text and a null where FP64 is due."""
    model, X = fitted_pipeline()
    client.registry.register("churn", model, data=X)
    client.metadata.endpoints.create("churn", {"routes": [{"model": "churn:1", "weight": 100}]}, "t")
    server = run_server(build_app(client.settings, access_log=False))
    row = X.head(1)
    for bad, words in (("high", "got str 'high'"), (None, "got null")):
        inputs = [_tensor(c, "BYTES", [row[c].iloc[0]]) if c == "plan" else
                  _tensor(c, "FP64", [bad if c == "x2" else float(row[c].iloc[0])]) for c in X.columns]
        r = httpx.post(f"{server.url}/v2/models/churn/infer", json={"inputs": inputs})
        assert r.status_code == 400 and r.json()["field"] == "inputs[2].data" and words in r.json()["error"]
    text = httpx.get(f"{server.url}/metrics").text
    assert 'conveyor_requests_total{code="400",endpoint="churn",protocol="oip_v2",version="-"} 2.0' in text
