"""One suite, every artifact root: a local folder, S3 (moto), GCS (gcp-storage-emulator), Azure Blob (Azurite).

Pipelines with caching, the registry, the prediction log, batch scoring and the agent's data
trigger run here unchanged on each root (the ``artifact_root`` fixture in conftest.py). Clients
find each store through the environment a user sets (see tests/store/emulators.py), and so do
the processes Conveyor starts: batch-scoring workers and the runs the agent launches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.store.conftest import ArtifactRoot

pytestmark = pytest.mark.slow


@pytest.fixture
def root_client(artifact_root: ArtifactRoot, settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A client whose artifacts live under ``<root>/artifacts``; metadata stays in SQLite."""
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", artifact_root.join("artifacts"))
    client = Client(load_settings())
    yield client
    client.close()


def test_pipeline_caches_registers_and_loads_on_every_root(artifact_root: ArtifactRoot, root_client) -> None:
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv

    @cv.step
    def make(n: int) -> np.ndarray:
        return np.arange(n, dtype=float)

    @cv.step
    def total(values: np.ndarray) -> float:
        return float(values.sum())

    @cv.pipeline
    def flow(n: int = 1000):
        return total(make(n))

    run = root_client.run_pipeline(flow, {"n": 1000})
    assert run.status == "succeeded" and run.output("total") == sum(range(1000))
    again = root_client.run_pipeline(flow, {"n": 1000})
    assert again.steps["make"].status == "cached"              # the cache works across the store
    assert again.output("make").tolist() == list(range(1000))

    X = np.random.default_rng(0).normal(size=(200, 3))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    version = root_client.registry.register("churn", model, data=X)
    loaded = root_client.registry.load(f"churn:{version.version}")
    assert (loaded.predict(X) == model.predict(X)).all()

    keys = artifact_root.keys()
    objects = [k for k in keys if k.startswith("artifacts/objects/")]
    assert objects and all(k.startswith("artifacts/") for k in keys)
    # every write went through tmp/ and was moved into place: nothing is left behind there
    assert not [k for k in keys if k.startswith("artifacts/tmp/")]


def test_a_changed_object_is_refused_on_every_root(artifact_root: ArtifactRoot, root_client) -> None:
    import fsspec

    from conveyor.errors import ArtifactIntegrityError
    from conveyor.store.artifacts.hashing import digest

    store = root_client.artifacts
    stored = store.put(np.arange(50_000, dtype=float))             # too large to stay inline
    assert stored.uri is not None and stored.uri.split("://", 1)[-1].endswith(stored.content_hash.split(":")[-1])
    assert store.get(stored).tolist() == list(range(50_000))
    with fsspec.open(stored.uri, "rb") as fh:                      # the recorded URI opens as it is
        assert digest(fh.read()) == stored.content_hash
    assert store.put(np.arange(50_000, dtype=float)).uri == stored.uri   # same bytes: the same object
    hexpart = stored.content_hash.split(":")[-1]
    artifact_root.other.pipe(artifact_root.path("artifacts", "objects", hexpart[:2], hexpart), b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="corrupted or was changed"):
        store.get(stored)


def test_folder_artifact_round_trips_on_every_root(artifact_root: ArtifactRoot, root_client, tmp_path: Path) -> None:
    src = tmp_path / "model-dir"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(bytes(range(256)) * 100)
    (src / "sub" / "config.json").write_text('{"layers": 3}')
    stored = root_client.artifacts.put_file(src)
    out = root_client.artifacts.export(stored, tmp_path / "restored")
    assert (out / "weights.bin").read_bytes() == bytes(range(256)) * 100
    assert (out / "sub" / "config.json").read_text() == '{"layers": 3}'


def test_prediction_log_writes_and_reads_parquet_on_every_root(artifact_root: ArtifactRoot) -> None:
    from conveyor.serving.prediction_log import PredictionLog, read_prediction_log
    from conveyor.serving.schema import Batch

    root = artifact_root.join("serving")
    assert read_prediction_log(root, "churn").num_rows == 0        # nothing logged yet: empty, no error
    log = PredictionLog(root, interval_s=60)
    ten = dt.datetime(2026, 3, 1, 10, 15, tzinfo=dt.UTC).timestamp()
    for i in range(30):
        m = np.full((2, 2), float(i))
        log.record(request_id=f"r{i}", ts=ten + i * 120, endpoint="churn", model="churn", version=1, shadow=False,
                   latency_ms=1.0, batch=Batch(None, 2, matrix=m, names=["a", "b"], dtypes=["float64"] * 2),
                   prediction=np.array([0.1, 0.9]))
    log.close()
    assert log.dropped_rows == 0 and log.written_files
    assert all(p.startswith(artifact_root.path("serving", "predictions", "endpoint=churn") + "/")
               for p in log.written_files)
    table = read_prediction_log(root, "churn")
    assert table.num_rows == 60 and sorted(set(table.column("hour").to_pylist())) == [10, 11]
    window = read_prediction_log(root, "churn", since=dt.datetime(2026, 3, 1, 11), until=dt.datetime(2026, 3, 1, 12))
    # requests every 2 minutes from 10:15: r23 (11:01) … r29 (11:13) fall in [11:00, 12:00), two rows each
    assert sorted(window.column("request_id").to_pylist()) == sorted([f"r{i}" for i in range(23, 30)] * 2)


def _write_parquet(artifact_root: ArtifactRoot, key: str, table: object) -> str:
    """Plain, uncompressed Parquet: the file's size depends only on the shape of the table."""
    import pyarrow.parquet as pq

    with artifact_root.other.open(artifact_root.path(key), "wb") as fh:
        pq.write_table(table, fh, row_group_size=700, compression="none", use_dictionary=False)
    return artifact_root.join(key)


def test_batch_scoring_streams_and_resumes_on_every_root(artifact_root: ArtifactRoot) -> None:
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.errors import Conflict
    from conveyor.serving.batch import score_batch
    from tests.serving.test_batch import linear_loader

    n = 5000
    table = pa.table({"a": np.arange(n, dtype=float), "b": np.ones(n)})
    src, out = _write_parquet(artifact_root, "in/data.parquet", table), artifact_root.join("out")
    result = score_batch(linear_loader, src, out, model_version="lin:1", workers=2, chunk_rows=1000,
                         progress=False)
    assert result.rows_scored == n
    fs, path = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()
    parts = sorted(p.rsplit("/", 1)[-1] for p in fs.find(path))
    assert parts == ["_conveyor_batch.json", *[f"part-{i:06d}.parquet" for i in range(5)]]   # no temporaries
    scored = pq.ParquetDataset(f"{path}/", filesystem=fs).read().sort_by("a")
    assert scored.num_rows == n and scored.column("a").to_pylist() == table.column("a").to_pylist()
    assert set(scored.column("model_version").to_pylist()) == {"lin:1"}
    again = score_batch(linear_loader, src, out, model_version="lin:1", workers=2, chunk_rows=1000, progress=False)
    assert again.chunks_skipped == result.chunks and again.chunks_scored == 0   # recorded as done: nothing redone

    # the input replaced by other rows of the same size: not the run the manifest describes
    size = artifact_root.other.size(artifact_root.path("in/data.parquet"))
    _write_parquet(artifact_root, "in/data.parquet", pa.table({"a": np.arange(n, dtype=float) + 0.5,
                                                               "b": np.ones(n)}))
    assert artifact_root.other.size(artifact_root.path("in/data.parquet")) == size
    with pytest.raises(Conflict, match="holds parts of another batch run; its output would differ in: input"):
        score_batch(linear_loader, src, out, model_version="lin:1", workers=2, chunk_rows=1000, progress=False)


def test_agent_sees_each_new_object_once_on_every_root(artifact_root: ArtifactRoot, root_client,
                                                       tmp_path: Path) -> None:
    from conveyor.automation.agent import Agent
    from tests.automation.test_automation import PIPELINE

    (tmp_path / "flow.py").write_text(PIPELINE)
    store = root_client.metadata.automation
    store.create_trigger("on-data", "data", artifact_root.join("inbox"), f"{tmp_path / 'flow.py'}:ingest",
                         {"path": "{object}", "out": str(tmp_path / "seen.txt")}, max_concurrent=2)
    agent = Agent(root_client, deliver=False, cwd=str(tmp_path))
    assert agent.scan_data_triggers() == 0                           # the prefix does not exist yet
    artifact_root.other.pipe(artifact_root.path("inbox", "a.csv"), b"1")
    agent.tick()
    agent.wait_for_children()
    artifact_root.other.pipe(artifact_root.path("inbox", "b.csv"), b"2")    # arrives after the first listing
    artifact_root.other.pipe(artifact_root.path("inbox", "_SUCCESS"), b"")  # a marker, not data
    agent.tick()
    agent.wait_for_children()
    agent.tick()                                                       # nothing new: nothing launched
    assert agent.children == {}
    seen = sorted((tmp_path / "seen.txt").read_text().splitlines())
    assert seen == [artifact_root.join("inbox", "a.csv"), artifact_root.join("inbox", "b.csv")]
    assert [f.status for f in store.firings("on-data")] == ["succeeded", "succeeded"]



import conveyor as cv  # noqa: E402  (the process executor imports the steps below by module)


@cv.step
def _block(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=20_000)      # too large to stay inline


@cv.step
def _total(blocks: list) -> float:
    return float(sum(b.sum() for b in blocks))


@cv.pipeline
def _blocks(seeds: list = [1, 2, 3]):  # noqa: B006
    return _total(_block.map(seed=seeds))


@pytest.mark.timeout(180)
def test_process_executor_stores_outputs_on_every_root(artifact_root: ArtifactRoot, root_client) -> None:
    # each attempt's child process opens its own client of the store: outputs are written from the
    # children and read back whole by the next step's child
    run = root_client.run_pipeline(_blocks, {"seeds": [1, 2, 3]}, executor="process")
    expected = sum(np.random.default_rng(s).normal(size=20_000).sum() for s in (1, 2, 3))
    assert run.status == "succeeded" and run.output("_total") == pytest.approx(expected)
    objects = [k for k in artifact_root.keys() if k.startswith("artifacts/objects/")]
    assert len(objects) == 3                                    # the three blocks, each written once
