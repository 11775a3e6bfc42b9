"""Every wire contract, called with its real client against a real server backed by the registry."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from conveyor.serving.server import build_app
from tests.serving.conftest import fitted_pipeline


@pytest.fixture
def deployed(client, run_server):
    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, metrics={"auc": 0.9}, data=X)
    client.registry.set_alias("churn", "staging", v.version)
    spec = {"routes": [{"model": "churn@staging", "weight": 100}], "shadows": [], "sticky_header": None}
    client.metadata.endpoints.create("churn-api", spec, "test")
    server = run_server(build_app(client.settings, access_log=False))
    return server, model, X.head(8)


def _records(X):
    return X.to_dict(orient="records")


def test_mlflow_scoring_formats(deployed) -> None:
    server, model, X = deployed
    expected = model.predict(X).tolist()
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/ping").status_code == 200 and http.get("/health").status_code == 200
        assert http.get("/version").text
        bodies = [{"dataframe_split": json.loads(X.to_json(orient="split", index=False))},
                  {"dataframe_records": _records(X)},
                  {"instances": _records(X)},
                  {"inputs": {c: X[c].tolist() for c in X.columns}}]
        for body in bodies:
            r = http.post("/invocations", json=body)
            assert r.status_code == 200, r.text
            assert r.json() == {"predictions": expected}


def test_triton_client_json_and_binary(deployed) -> None:
    import tritonclient.http as triton

    server, model, X = deployed
    tc = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert tc.is_server_live() and tc.is_server_ready() and tc.is_model_ready("churn-api")
    meta = tc.get_model_metadata("churn-api")
    assert [i["name"] for i in meta["inputs"]] == list(X.columns)
    inputs = []
    for col in X.columns:
        arr = X[col].to_numpy()
        if arr.dtype == object:
            arr = arr.astype(np.object_)
            t = triton.InferInput(col, [len(arr)], "BYTES")
            t.set_data_from_numpy(arr, binary_data=col == "plan")
        else:
            t = triton.InferInput(col, [len(arr)], "FP64")
            t.set_data_from_numpy(arr.astype(np.float64), binary_data=col == "x0")
        inputs.append(t)
    outputs = [triton.InferRequestedOutput("predict", binary_data=False)]
    result = tc.infer("churn-api", inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(X))
    binary = tc.infer("churn-api", inputs, outputs=[triton.InferRequestedOutput("predict", binary_data=True)],
                      model_version="1")
    np.testing.assert_array_equal(binary.as_numpy("predict"), model.predict(X))


def test_sagemaker_runtime_with_boto3(deployed) -> None:
    import boto3

    server, model, X = deployed
    sm = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    csv = X.to_csv(header=False, index=False)
    out = sm.invoke_endpoint(EndpointName="churn-api", Body=csv, ContentType="text/csv", Accept="application/json")
    assert json.loads(out["Body"].read()) == {"predictions": model.predict(X).tolist()}
    out = sm.invoke_endpoint(EndpointName="churn-api", Body=json.dumps({"instances": _records(X)}),
                             ContentType="application/json")
    assert json.loads(out["Body"].read())["predictions"] == model.predict(X).tolist()
    with httpx.Client(base_url=server.url) as http:      # the container contract, too
        r = http.post("/invocations", content=csv, headers={"content-type": "text/csv", "accept": "text/csv"})
        assert r.text.split() == [str(v) for v in model.predict(X)]


def test_vertex_and_azure_contracts(deployed) -> None:
    server, model, X = deployed
    with httpx.Client(base_url=server.url) as http:
        r = http.post("/predict", json={"instances": _records(X), "parameters": {}})
        assert r.status_code == 200 and r.json()["predictions"] == model.predict(X).tolist()
        assert r.json()["deployedModelId"] == "churn:1"
        rows = X.values.tolist()
        r = http.post("/predict", json={"instances": rows})
        assert r.json()["predictions"] == model.predict(X).tolist()
        assert http.get("/health").status_code == 200
        r = http.post("/score", json={"input_data": {"columns": list(X.columns), "index": list(range(len(X))),
                                                     "data": rows}})
        assert r.json() == model.predict(X).tolist()
        r = http.post("/score", json={"data": _records(X)})
        assert r.json() == model.predict(X).tolist()


def test_vertex_routes_follow_aip_settings(client, run_server) -> None:
    model, X = fitted_pipeline()
    client.registry.register("m", model, data=X)
    client.metadata.endpoints.create("m", {"routes": [{"model": "m:1", "weight": 100}]}, "t")
    settings = client.settings.with_overrides(aip_predict_route="/v1/models/m:predict", aip_health_route="/isalive")
    server = run_server(build_app(settings, access_log=False))
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/isalive").status_code == 200
        r = http.post("/v1/models/m:predict", json={"instances": _records(X.head(3))})
        assert r.json()["predictions"] == model.predict(X.head(3)).tolist()


def test_health_ready_and_metrics(deployed) -> None:
    server, _model, X = deployed
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json()["endpoints"] == ["churn-api"]
        for _ in range(3):
            http.post("/invocations", json={"dataframe_records": _records(X)})
        bad = http.post("/invocations", json={"dataframe_records": [{"x0": 1}]})
        text = http.get("/metrics").text
    assert bad.status_code == 400 and bad.json()["field"] == "x1" and "Missing column 'x1'" in bad.json()["error"]
    assert bad.json()["request_id"] == bad.headers["x-request-id"]
    assert 'conveyor_requests_total{code="200",endpoint="churn-api",protocol="sagemaker",version="1"} 3.0' in text
    assert 'conveyor_predicted_rows_total{endpoint="churn-api",version="1"} 24.0' in text
    assert 'conveyor_requests_total{code="400",endpoint="churn-api",protocol="sagemaker",version="-"} 1.0' in text
    assert 'conveyor_request_errors_total{endpoint="churn-api",kind="InvalidRequest",version="-"} 1.0' in text
    assert "conveyor_model_load_seconds_count" in text


def test_alias_move_and_new_key_reach_a_running_server(client, run_server) -> None:
    import time

    from sklearn.dummy import DummyRegressor

    from conveyor.serving.auth import generate_key

    X = np.zeros((5, 1))
    for value in (1.0, 2.0):
        client.registry.register("d", DummyRegressor(strategy="constant", constant=value).fit(X, X[:, 0]), data=X)
    client.registry.set_alias("d", "live", 1)
    client.metadata.endpoints.create("d", {"routes": [{"model": "d@live", "weight": 100}]}, "t")
    server = run_server(build_app(client.settings, access_log=False))

    def ask(headers=None) -> httpx.Response:
        return httpx.post(f"{server.url}/invocations", json={"instances": [[0.0]]}, headers=headers or {})

    assert ask().json() == {"predictions": [1.0]}
    client.registry.set_alias("d", "live", 2)
    deadline = time.monotonic() + 10
    while ask().json() != {"predictions": [2.0]}:
        assert time.monotonic() < deadline, "the server never picked up the alias move"
        time.sleep(0.1)
    key_id, key, digest = generate_key()
    client.metadata.endpoints.add_key(key_id, digest, "predict", None, None, None, "t")
    deadline = time.monotonic() + 10
    while ask().status_code != 401:
        assert time.monotonic() < deadline, "the server never required the new key"
        time.sleep(0.1)
    assert ask({"Authorization": f"Bearer {key}"}).json() == {"predictions": [2.0]}
    client.metadata.endpoints.revoke_key(key_id, "t")
    deadline = time.monotonic() + 10
    while ask({"Authorization": f"Bearer {key}"}).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.1)


def test_the_prediction_log_can_be_switched_off(client, run_server) -> None:
    from sklearn.dummy import DummyRegressor

    from conveyor.serving.prediction_log import read_prediction_log
    from tests.serving.conftest import Running

    X = np.zeros((5, 1))
    client.registry.register("d", DummyRegressor().fit(X, X[:, 0]), data=X)
    client.metadata.endpoints.create("d", {"routes": [{"model": "d:1", "weight": 100}]}, "t")
    root = client.settings.artifact_root
    for logged in (False, True):
        with Running(build_app(client.settings, access_log=False, prediction_log=logged)) as server:
            assert httpx.post(f"{server.url}/invocations", json={"instances": [[0.0]]}).status_code == 200
        assert read_prediction_log(root, "d").num_rows == (1 if logged else 0)
