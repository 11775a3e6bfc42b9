"""Object storage for real: S3 through moto's server on loopback, reached by s3fs and boto3.

The artifact store, the prediction log, batch scoring and the agent's event sources all take
fsspec URLs; here they run against an S3 endpoint configured the way users configure one
(``AWS_ENDPOINT_URL`` and credentials in the environment).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the environment points every S3 client (and child process) at the emulator."""
    import boto3
    import fsspec

    for key, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    name = f"cv-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    fsspec.filesystem("s3").invalidate_cache()
    return name


def test_artifact_root_on_s3_runs_registers_and_loads(bucket: str, settings, monkeypatch) -> None:
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", f"s3://{bucket}/artifacts")

    @cv.step
    def make(n: int) -> np.ndarray:
        return np.arange(n, dtype=float)

    @cv.step
    def total(values: np.ndarray) -> float:
        return float(values.sum())

    @cv.pipeline
    def flow(n: int = 1000):
        return total(make(n))

    client = Client(load_settings())
    try:
        run = client.run_pipeline(flow, {"n": 1000})
        assert run.status == "succeeded" and run.output("total") == sum(range(1000))
        again = client.run_pipeline(flow, {"n": 1000})
        assert again.steps["make"].status == "cached"          # the cache works across an object store
        assert again.output("make").tolist() == list(range(1000))

        X = np.random.default_rng(0).normal(size=(200, 3))
        model = LogisticRegression().fit(X, X[:, 0] > 0)
        version = client.registry.register("s3-model", model, data=X)
        loaded = client.registry.load(f"s3-model:{version.version}")
        assert (loaded.predict(X) == model.predict(X)).all()
    finally:
        client.close()
    import boto3

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(k.startswith("artifacts/") for k in keys)


def test_prediction_log_writes_and_reads_parquet_on_s3(bucket: str) -> None:
    from conveyor.serving.prediction_log import PredictionLog, read_prediction_log
    from conveyor.serving.schema import Batch

    root = f"s3://{bucket}/serving"
    log = PredictionLog(root, interval_s=60)
    ten = dt.datetime(2026, 3, 1, 10, 15, tzinfo=dt.UTC).timestamp()
    for i in range(30):
        m = np.full((2, 2), float(i))
        log.record(request_id=f"r{i}", ts=ten + i * 120, endpoint="churn", model="churn", version=1, shadow=False,
                   latency_ms=1.0, batch=Batch(None, 2, matrix=m, names=["a", "b"], dtypes=["float64"] * 2),
                   prediction=np.array([0.1, 0.9]))
    log.close()
    assert log.dropped_rows == 0 and all(p.startswith(f"{bucket}/serving/predictions/endpoint=churn/")
                                         for p in log.written_files)
    table = read_prediction_log(root, "churn")
    assert table.num_rows == 60 and sorted(set(table.column("hour").to_pylist())) == [10, 11]
    window = read_prediction_log(root, "churn", since=dt.datetime(2026, 3, 1, 11), until=dt.datetime(2026, 3, 1, 12))
    # requests every 2 minutes from 10:15: r23 (11:01) … r29 (11:13) fall in [11:00, 12:00), two rows each
    assert sorted(window.column("request_id").to_pylist()) == sorted([f"r{i}" for i in range(23, 30)] * 2)


def test_batch_scoring_streams_s3_to_s3_and_resumes(bucket: str, tmp_path: Path) -> None:
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.serving.batch import score_batch
    from tests.serving.test_batch import linear_loader

    fs = fsspec.filesystem("s3")
    n = 5000
    table = pa.table({"a": np.arange(n, dtype=float), "b": np.ones(n)})
    with fs.open(f"{bucket}/in/data.parquet", "wb") as fh:
        pq.write_table(table, fh, row_group_size=700)
    src, out = f"s3://{bucket}/in/data.parquet", f"s3://{bucket}/out"
    result = score_batch(linear_loader, src, out, model_version="lin:1", workers=2, chunk_rows=1000,
                         progress=False)
    assert result.rows_scored == n
    fs.invalidate_cache()
    scored = pq.ParquetDataset(f"{bucket}/out", filesystem=fs).read().sort_by("a")
    assert scored.num_rows == n and scored.column("a").to_pylist() == table.column("a").to_pylist()
    assert set(scored.column("model_version").to_pylist()) == {"lin:1"}
    again = score_batch(linear_loader, src, out, model_version="lin:1", workers=2, chunk_rows=1000, progress=False)
    assert again.chunks_skipped == result.chunks and again.chunks_scored == 0   # recorded as done: nothing redone


def test_agent_sees_each_new_s3_object_once(bucket: str, client, tmp_path: Path) -> None:
    import boto3

    from conveyor.automation.agent import Agent
    from tests.automation.test_automation import PIPELINE

    (tmp_path / "flow.py").write_text(PIPELINE)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="inbox/a.csv", Body=b"1")
    store = client.metadata.automation
    store.create_trigger("on-s3", "data", f"s3://{bucket}/inbox", f"{tmp_path / 'flow.py'}:ingest",
                         {"path": "{object}", "out": str(tmp_path / "seen.txt")}, max_concurrent=2)
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    agent.tick()
    agent.wait_for_children()
    s3.put_object(Bucket=bucket, Key="inbox/b.csv", Body=b"2")        # arrives after the first listing
    agent.tick()
    agent.wait_for_children()
    agent.tick()                                                       # nothing new: nothing launched
    assert agent.children == {}
    seen = sorted((tmp_path / "seen.txt").read_text().splitlines())
    assert seen == [f"s3://{bucket}/inbox/a.csv", f"s3://{bucket}/inbox/b.csv"]
    assert [f.status for f in store.firings("on-s3")] == ["succeeded", "succeeded"]
