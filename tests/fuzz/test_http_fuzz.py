"""HTTP fuzzing of a real ``conveyor serve``: every route from its OpenAPI description (schemathesis),
then hand-written hostile bodies per protocol. Zero 5xx, the server never dies, every error is JSON
naming a field, and its memory stays flat.

Bounded: ``EXAMPLES`` positive and ``EXAMPLES`` negative (schema-violating) cases per operation,
``ROUNDS`` rounds of the hostile set. Routes come from ``/openapi.json``, so a route added later
(anywhere in the app) is fuzzed without touching this file.
"""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

from tests.serving.conftest import fitted_pipeline
from tests.servers import ServeProcess

EXAMPLES = 8
ROUNDS = 6
MAX_BODY = 1 << 20


@pytest.fixture
def fuzzed_server(client, serve_process) -> ServeProcess:
    from sklearn.linear_model import LogisticRegression

    model, X = fitted_pipeline()
    client.registry.register("churn", model, data=X)
    client.metadata.endpoints.create("churn", {"routes": [{"model": "churn:1", "weight": 100}]}, "t")
    rng = np.random.default_rng(0)
    Xn = rng.normal(size=(60, 2))
    client.registry.register("num", LogisticRegression().fit(Xn, Xn[:, 0] > 0), data=Xn)
    client.metadata.endpoints.create("num", {"routes": [{"model": "num:1", "weight": 100}]}, "t")
    return serve_process("--default-endpoint", "churn", "--no-access-log",
                         env={"CONVEYOR_SERVE_MAX_BODY_BYTES": str(MAX_BODY)})


def assert_well_answered(status: int, content_type: str | list[str], body: bytes, what: str) -> None:
    if isinstance(content_type, list):      # schemathesis keeps every header as a list
        content_type = content_type[0] if content_type else ""
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), f"{what}: {status} answered {content_type}"
        import orjson

        data = orjson.loads(body)
        assert isinstance(data, dict) and data.get("error") and data.get("field"), f"{what}: {data}"


@pytest.mark.slow
def test_fuzzing_every_route_and_hostile_bodies(fuzzed_server) -> None:
    """One server for both parts (starting one with two registered models is most of the cost)."""
    fuzz_every_route_of_the_openapi_description(fuzzed_server)
    hostile_bodies_answer_json_4xx_and_memory_stays_flat(fuzzed_server)


def fuzz_every_route_of_the_openapi_description(fuzzed_server: ServeProcess) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    url = fuzzed_server.url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v2/models/{name}/infer", "/invocations", "/predict", "/score", "/readyz"} <= paths
    tried: dict[str, int] = {}
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case) -> None:
                response = case.call(base_url=url, timeout=30)
                tried[op.label] = tried.get(op.label, 0) + 1
                assert_well_answered(response.status_code, response.headers.get("content-type", ""),
                                     response.content, f"{case.method} {case.formatted_path}")

            try:
                fuzz()
            except Unsatisfiable:       # no body, only path strings: nothing a negative case can break on the wire
                assert mode is GenerationMode.NEGATIVE and not op.body
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- server log ---\n{fuzzed_server.output()[-4000:]}") from None
    # Every operation ran; those with a body ran every example (GET routes without parameters have one).
    assert set(tried) == {op.label for op in operations}
    assert all(tried[op.label] >= EXAMPLES for op in operations if op.method.upper() == "POST")
    assert httpx.get(f"{url}/healthz").status_code == 200 and fuzzed_server.proc.poll() is None


def hostile_bodies() -> list[tuple[str, bytes, str]]:
    """(what, body, content type): the shapes of input that break servers."""
    nested = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    inside_limit = b'{"instances": ' + b"[" * 200 + b"1.0" + b"]" * 200 + b"}"
    good = b'{"instances": [{"x0": 1.0, "x1": 2.0, "x2": 0.5, "x3": 0.1, "plan": "pro"}]}'
    return [
        ("huge", b'{"instances": [' + b"[1.0]," * (MAX_BODY // 6) + b"[1.0]]}", "application/json"),
        ("deeply nested", nested, "application/json"),
        ("nested within the parser's limit", inside_limit, "application/json"),
        ("empty", b"", "application/json"),
        ("binary garbage", os.urandom(4096), "application/octet-stream"),
        ("garbage as JSON", os.urandom(512), "application/json"),
        ("truncated JSON", good[: len(good) // 2], "application/json"),
        ("NaN", b'{"instances": [[NaN, 1.0, 2.0, 3.0, "pro"]]}', "application/json"),
        ("Infinity", b'{"instances": [[Infinity, 1.0, 2.0, 3.0, "pro"]]}', "application/json"),
        ("huge number", b'{"instances": [[1e999, 1.0, 2.0, 3.0, "pro"]]}', "application/json"),
        ("null feature", b'{"instances": [{"x0": null, "x1": 2.0, "x2": 0.5, "x3": 0.1, "plan": "pro"}]}',
         "application/json"),
        ("text in a number", b'{"instances": [{"x0": "high", "x1": 2.0, "x2": 0.5, "x3": 0.1, "plan": "pro"}]}',
         "application/json"),
        ("number in a text", b'{"instances": [{"x0": 1.0, "x1": 2.0, "x2": 0.5, "x3": 0.1, "plan": 7}]}',
         "application/json"),
        ("bool in a number", b'{"instances": [{"x0": true, "x1": 2.0, "x2": 0.5, "x3": 0.1, "plan": "pro"}]}',
         "application/json"),
        ("object in a number", b'{"instances": [{"x0": {"a": 1}, "x1": 2, "x2": 0.5, "x3": 0.1, "plan": "p"}]}',
         "application/json"),
        ("ragged rows", b'{"instances": [[1.0, 2.0], [1.0]]}', "application/json"),
        ("empty rows", b'{"instances": []}', "application/json"),
        ("a bare number", b"42", "application/json"),
        ("a bare string", b'"x"', "application/json"),
        ("xml", b"<instances><i>1</i></instances>", "application/xml"),
        ("form", b"instances=1&x=2", "application/x-www-form-urlencoded"),
        ("csv with text", b"a,b,c,d,e\n1,2,3\n", "text/csv"),
        ("csv garbage", os.urandom(256), "text/csv"),
        ("multipart", b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--\r\n",
         "multipart/form-data; boundary=b"),
        ("oip: text in FP64", b'{"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": ["high"]}]}',
         "application/json"),
        ("oip: null in FP64", b'{"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [null]}]}',
         "application/json"),
        ("oip: bad shape", b'{"inputs": [{"name": "x0", "shape": [-1, 99999999999], "datatype": "FP64", '
                           b'"data": [1.0]}]}', "application/json"),
        ("oip: huge shape", b'{"inputs": [{"name": "x0", "shape": [4294967296, 4294967296], "datatype": "INT8", '
                            b'"data": [1]}]}', "application/json"),
        ("oip: unknown datatype", b'{"inputs": [{"name": "x0", "shape": [1], "datatype": "FP128", "data": [1]}]}',
         "application/json"),
        ("oip: bool in INT64", b'{"inputs": [{"name": "x0", "shape": [1], "datatype": "INT64", "data": [true]}]}',
         "application/json"),
        ("oip: binary size past the end", b'{"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", '
                                          b'"parameters": {"binary_data_size": 64}}]}', "application/octet-stream"),
        ("oip: outputs not a list", b'{"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}], '
                                    b'"outputs": 5}', "application/json"),
        ("oip: id not a string", b'{"id": [1], "inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", '
                                 b'"data": [1]}]}', "application/json"),
    ]


PATHS = ["/v2/models/churn/infer", "/v2/models/num/versions/1/infer", "/v2/models/churn/versions/9/infer",
         "/invocations", "/endpoints/num/invocations", "/predict", "/score"]


def hostile_bodies_answer_json_4xx_and_memory_stays_flat(fuzzed_server: ServeProcess) -> None:
    url = fuzzed_server.url
    bodies = hostile_bodies()
    binary_header = {"inference-header-content-length": "10"}

    def one_round(http: httpx.Client) -> int:
        n = 0
        for path in PATHS:
            for what, body, ctype in bodies:
                headers = {"content-type": ctype}
                if what.startswith("oip: binary"):
                    headers |= {"inference-header-content-length": str(len(body))}
                r = http.post(path, content=body, headers=headers)
                assert_well_answered(r.status_code, r.headers.get("content-type", ""), r.content, f"{what} {path}")
                # The numeric endpoint ignores the extra columns of the tabular bodies: those may succeed.
                assert r.status_code >= 400 or "/num/" in path, f"{what} {path} was accepted"
                n += 1
            r = http.post(path, content=b'{"inputs": []}' + os.urandom(64), headers=binary_header)
            assert_well_answered(r.status_code, r.headers.get("content-type", ""), r.content, f"binary {path}")
        return n

    with httpx.Client(base_url=url, timeout=30) as http:
        one_round(http)                      # warm-up: first-use allocations are not a leak
        one_round(http)
        before = fuzzed_server.rss_bytes()
        sent = sum(one_round(http) for _ in range(ROUNDS))
        after = fuzzed_server.rss_bytes()
        assert http.get("/healthz").status_code == 200
        good = {"instances": [{"x0": 1.0, "x1": 2.0, "x2": 0.5, "x3": 0.1, "plan": "pro"}]}
        assert http.post("/invocations", json=good).status_code == 200
        metrics = http.get("/metrics").text
    assert sent == ROUNDS * len(PATHS) * len(bodies)
    assert fuzzed_server.proc.poll() is None
    assert 'code="400"' in metrics and 'code="413"' in metrics and 'code="500"' not in metrics
    # Generous: allocator noise and caches, not a leak of a body per request (that would be 100s of MB).
    assert after - before < max(32 << 20, before // 5), (before, after, sent)
