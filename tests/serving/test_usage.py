"""A server counts what each endpoint and version costs (requests, errors, CPU, wall time) and writes it to
``serving_usage`` off the request path: periodically, at shutdown, and later when the database was down."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import numpy as np
import pytest

from conveyor.config import load_settings
from conveyor.serving.app import create_app
from conveyor.serving.catalog import ColumnSpec, EndpointSpec, InMemoryCatalog, ModelKey, Signature, WeightedRoute
from conveyor.serving.service import ServingService
from conveyor.serving.usage import UsageMeter
from conveyor.store.metadata import MetadataStore, Reconnect
from conveyor.store.metadata.serving_usage import UsageRecord
from tests.conftest import free_port
from tests.serving.conftest import Running

SIG = Signature((ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))


class Model:
    """Predicts the first column after a little real work; raises when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def predict(self, X):
        if self.fail:
            raise RuntimeError("weights are corrupt")
        X = np.asarray(X)
        return X[:, 0] + 0 * np.linalg.norm(np.outer(X[:, 0], X[:, 1]) @ np.ones((len(X), 64)))


def _service(meter: UsageMeter) -> ServingService:
    cat = InMemoryCatalog()
    cat.add_model("m", 1, Model(), SIG)
    cat.add_model("m", 2, Model(fail=True), SIG)
    cat.set_endpoint(EndpointSpec("ep", (WeightedRoute(ModelKey("m", 1), 50), WeightedRoute(ModelKey("m", 2), 50))))
    return ServingService(cat, usage=meter)


def _infer(http: httpx.Client, version: int, a: object = 1.0) -> int:
    body = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [2], "data": [a, 2.0]},
                       {"name": "b", "datatype": "FP64", "shape": [2], "data": [3.0, 4.0]}]}
    return http.post(f"/v2/models/ep/versions/{version}/infer", json=body).status_code


def _by_version(records: Iterable[UsageRecord]) -> dict[tuple[str | None, int | None], UsageRecord]:
    return {(r.model, r.version): r for r in records}


def test_requests_errors_and_cpu_per_version_are_written_at_shutdown(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'md.db'}")
    before = time.time()
    service = _service(UsageMeter(store.serving_usage.record, interval_s=3600, host="here"))
    with Running(create_app(service, load_settings())) as server, httpx.Client(base_url=server.url) as http:
        codes = [_infer(http, 1) for _ in range(7)] + [_infer(http, 2) for _ in range(3)]
        codes += [_infer(http, 1, a="high") for _ in range(2)]      # refused before any model ran
        assert codes == [200] * 7 + [500] * 3 + [400] * 2
        assert store.serving_usage.totals() == []                   # nothing written while serving (hourly)
    usage = _by_version(store.serving_usage.totals("ep"))
    ok, failing, refused = usage[("m", 1)], usage[("m", 2)], usage[(None, None)]
    assert (ok.requests, ok.errors, failing.requests, failing.errors) == (7, 0, 3, 3)
    assert (refused.requests, refused.errors, refused.cpu_s) == (2, 2, 0.0)
    assert ok.cpu_s > 0 and failing.cpu_s > 0 and ok.wall_s >= ok.cpu_s / 2 > 0
    assert before <= ok.period_start <= ok.period_end <= time.time()
    with store.engine.connect() as conn:
        assert {row[0] for row in conn.exec_driver_sql("select host from serving_usage")} == {"here"}
    store.close()


def test_periodic_writes_add_up_and_the_request_path_never_waits_for_them(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'md.db'}")
    meter = UsageMeter(store.serving_usage.record, interval_s=0.05)
    with Running(create_app(_service(meter), load_settings())) as server, httpx.Client(base_url=server.url) as http:
        for _ in range(5):
            assert _infer(http, 1) == 200
        deadline = time.monotonic() + 20
        while sum(r.requests for r in store.serving_usage.totals()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(r.requests for r in store.serving_usage.totals()) == 5    # written by the background thread
        for _ in range(4):
            assert _infer(http, 1) == 200
    [total] = store.serving_usage.totals("ep")
    assert (total.model, total.version, total.requests, total.errors) == ("m", 1, 9, 0) and total.cpu_s > 0
    store.close()


def test_a_database_that_is_down_fails_no_request_and_loses_no_count(tmp_path: Path, caplog) -> None:
    down = MetadataStore(f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/db?connect_timeout=1",
                         auto_migrate=False, reconnect=Reconnect(retries=0))
    up = MetadataStore(f"sqlite:///{tmp_path / 'md.db'}")
    target = [down]

    def write(records: Iterable[UsageRecord]) -> None:   # the server's database, down and then back
        target[0].serving_usage.record(records)

    meter = UsageMeter(write, interval_s=0.05)
    with caplog.at_level(logging.WARNING, logger="conveyor.serving"):
        with Running(create_app(_service(meter), load_settings())) as server, \
                httpx.Client(base_url=server.url) as http:
            assert [_infer(http, 1) for _ in range(6)] == [200] * 6
            deadline = time.monotonic() + 20
            while "could not write serving usage" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "could not write serving usage" in caplog.text and "keeping the counts" in caplog.text
            target[0] = up                                         # the database is back
    [total] = up.serving_usage.totals()
    assert (total.requests, total.errors) == (6, 0) and total.cpu_s > 0
    up.close()
    down.close()


@pytest.mark.slow
def test_conveyor_serve_writes_its_usage_to_the_registrys_database(client) -> None:
    from conveyor.serving.server import build_app
    from tests.serving.conftest import fitted_pipeline

    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, data=X)
    client.metadata.endpoints.create("churn-api", {"routes": [{"model": f"churn:{v.version}", "weight": 100}],
                                                   "shadows": [], "sticky_header": None}, "test")
    with Running(build_app(client.settings, access_log=False, prediction_log=False)) as server, \
            httpx.Client(base_url=server.url) as http:
        for _ in range(4):
            r = http.post("/endpoints/churn-api/invocations", json={"dataframe_records": X.head(3).to_dict("records")})
            assert r.status_code == 200, r.text
    [total] = client.metadata.serving_usage.totals("churn-api")
    assert (total.model, total.version, total.requests, total.errors) == ("churn", v.version, 4, 0)
    assert total.cpu_s > 0
