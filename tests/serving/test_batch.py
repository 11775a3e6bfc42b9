"""Batch scoring: correct predictions, the version column, resume after a killed worker, clear conflicts."""

from __future__ import annotations

import functools
import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.errors import Conflict, ConveyorError
from conveyor.serving.batch import MANIFEST, score_batch
from tests.processes import alive, children, wait_until


class Killer:
    """A model that kills its own worker process the first time it sees a chosen row."""

    def __init__(self, marker: str, poison: float) -> None:
        self.marker, self.poison = marker, poison

    def predict(self, X):
        X = np.asarray(X)
        if (X[:, 0] == self.poison).any() and not Path(self.marker).exists():
            Path(self.marker).write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return X[:, 0] * 2 + X[:, 1]


def linear_loader() -> tuple[object, str]:
    return Killer("/nonexistent/never", poison=float("nan")), "lin:1"


def killer_loader(marker: str) -> tuple[object, str]:
    return Killer(marker, poison=2500.0), "lin:1"


def _data(tmp_path: Path, rows: int = 10_000) -> tuple[pd.DataFrame, Path, Path]:
    df = pd.DataFrame({"a": np.arange(rows, dtype="float64"), "b": np.ones(rows)})
    pq_path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), pq_path, row_group_size=1500)
    csv_path = tmp_path / "in.csv"
    df.to_csv(csv_path, index=False)
    return df, pq_path, csv_path


def _read(out: Path) -> pd.DataFrame:
    return pq.read_table(sorted(out.glob("part-*.parquet"))).to_pandas()


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_scores_every_row_once_with_the_version(tmp_path: Path, kind: str) -> None:
    df, pq_path, csv_path = _data(tmp_path)
    src = pq_path if kind == "parquet" else csv_path
    out = tmp_path / f"out-{kind}"
    result = score_batch(linear_loader, str(src), str(out), model_version="lin:1", workers=2, chunk_rows=2000,
                         progress=False)
    assert result.rows_scored == len(df) and result.chunks_scored == 5
    got = _read(out).sort_values("a").reset_index(drop=True)
    np.testing.assert_array_equal(got["a"], df["a"])
    np.testing.assert_allclose(got["prediction"], df["a"] * 2 + df["b"])
    assert set(got["model_version"]) == {"lin:1"}


def test_killed_worker_then_resume_does_only_the_rest(tmp_path: Path) -> None:
    df, pq_path, _ = _data(tmp_path)
    out = tmp_path / "out"
    loader = functools.partial(killer_loader, str(tmp_path / "marker"))
    with pytest.raises(ConveyorError, match="worker died .* Run the same command again"):
        score_batch(loader, str(pq_path), str(out), model_version="lin:1", workers=1, chunk_rows=1000, progress=False)
    done_before = json.loads((out / MANIFEST).read_text())["done"]
    assert 0 < len(done_before) < 10 and "2" not in done_before
    result = score_batch(loader, str(pq_path), str(out), model_version="lin:1", workers=2, chunk_rows=1000,
                         progress=False)
    assert result.chunks_skipped == len(done_before)
    assert result.chunks_scored == 10 - len(done_before)
    got = _read(out)
    assert len(got) == len(df) and got["a"].is_unique


def test_other_model_or_input_needs_overwrite(tmp_path: Path) -> None:
    _df, pq_path, _ = _data(tmp_path, rows=100)
    out = tmp_path / "out"
    score_batch(linear_loader, str(pq_path), str(out), model_version="lin:1", chunk_rows=50, progress=False, workers=1)
    with pytest.raises(Conflict, match="Use a new output or --overwrite"):
        score_batch(linear_loader, str(pq_path), str(out), model_version="lin:2", chunk_rows=50, progress=False,
                    workers=1)
    again = score_batch(linear_loader, str(pq_path), str(out), model_version="lin:2", chunk_rows=50, progress=False,
                        workers=1, overwrite=True)
    assert again.chunks_scored == 2


def test_cli_scores_with_a_registered_model(client, tmp_path: Path) -> None:
    import subprocess
    import sys

    from sklearn.linear_model import LinearRegression

    from tests.conftest import REPO

    df, pq_path, _ = _data(tmp_path, rows=3000)
    model = LinearRegression().fit(df[["a", "b"]], df["a"] * 3)
    client.registry.register("reg", model, data=df[["a", "b"]])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "conveyor.cli.main", "batch", "score", "reg", "--input",
                           str(pq_path), "--output", str(tmp_path / "scored"), "--chunk-rows", "1000", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows_scored"] == 3000 and summary["model_version"] == "reg:1"
    got = _read(tmp_path / "scored").sort_values("a")
    np.testing.assert_allclose(got["prediction"], model.predict(df[["a", "b"]]))


class EnvModel:
    """Predicts the value of CV_TEST_MARK in the worker's environment."""

    def predict(self, X):
        return np.full(len(X), float(os.environ.get("CV_TEST_MARK", "-1")))


def env_loader() -> tuple[object, str]:
    return EnvModel(), "env:1"


def test_workers_see_the_callers_current_environment(tmp_path, monkeypatch) -> None:
    import threading

    _, pq_path, _ = _data(tmp_path, rows=300)
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)   # another thread: workers come from a forkserver
    busy.start()
    try:
        for mark in ("1", "2"):                               # the forkserver outlives the first call
            monkeypatch.setenv("CV_TEST_MARK", mark)
            out = tmp_path / f"out{mark}"
            score_batch(env_loader, str(pq_path), str(out), model_version=f"env:{mark}", workers=2,
                        chunk_rows=100, progress=False)
            scored = pq.ParquetDataset(out).read()
            assert set(scored.column("prediction").to_pylist()) == {float(mark)}
    finally:
        stop.set()


class SumModel:
    """Predicts the sum of the feature columns it is given (so other features give other predictions)."""

    def predict(self, X):
        return np.asarray(X, dtype="float64").sum(axis=1)


def sum_loader() -> tuple[object, str]:
    return SumModel(), "sum:1"


def _score(pq_path: Path, out: Path, **kw):
    args = {"model_version": "sum:1", "workers": 1, "chunk_rows": 50, "progress": False, **kw}
    return score_batch(sum_loader, str(pq_path), str(out), **args)


def test_rerun_with_other_features_never_reuses_parts(tmp_path: Path) -> None:
    df, pq_path, _ = _data(tmp_path, rows=100)
    out = tmp_path / "out"
    _score(pq_path, out, features=["a", "b"])
    with pytest.raises(Conflict, match=r"features \['a', 'b'\] → \['a'\].*Use a new output or --overwrite"):
        _score(pq_path, out, features=["a"])
    again = _score(pq_path, out, features=["a"], overwrite=True)
    assert again.chunks_scored == 2 and again.chunks_skipped == 0
    got = _read(out).sort_values("a")
    np.testing.assert_allclose(got["prediction"], df["a"])          # not a + b from the first run


def test_rerun_with_the_same_key_resumes_and_another_artifact_starts_over(tmp_path: Path) -> None:
    _df, pq_path, _ = _data(tmp_path, rows=100)
    out = tmp_path / "out"
    _score(pq_path, out, features=["a", "b"], model_digest="sha256:one")
    same = _score(pq_path, out, features=["a", "b"], model_digest="sha256:one")
    assert same.chunks_skipped == 2 and same.chunks_scored == 0
    with pytest.raises(Conflict, match="model_digest 'sha256:one' → 'sha256:two'"):
        _score(pq_path, out, features=["a", "b"], model_digest="sha256:two")
    with pytest.raises(Conflict, match="format 'parquet' → 'csv'|chunk_rows 50 → 25"):
        _score(pq_path, out, features=["a", "b"], model_digest="sha256:one", chunk_rows=25)
    key = json.loads((out / MANIFEST).read_text())["key"]
    assert key["features"] == ["a", "b"] and key["model_digest"] == "sha256:one"
    assert key["input"]["size"] == pq_path.stat().st_size and key["output_columns"] == ["prediction", "model_version"]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_input_missing_a_feature_fails_before_any_worker(tmp_path: Path, kind: str) -> None:
    from conveyor.errors import InvalidRequest

    _df, pq_path, csv_path = _data(tmp_path, rows=100)
    src = pq_path if kind == "parquet" else csv_path
    out = tmp_path / "out"
    with pytest.raises(InvalidRequest, match=rf"Input {src} lacks the feature column\(s\) c, d that sum:1 expects"
                                             r".*The file has: a, b\. Add the missing columns"):
        _score(src, out, features=["a", "c", "b", "d"])
    assert not out.exists() or not list(out.glob("part-*"))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkilled_cli_leaves_no_worker(client, tmp_path: Path) -> None:
    import subprocess
    import sys

    from sklearn.linear_model import LinearRegression

    from tests.conftest import REPO

    rows = 10_000
    df = pd.DataFrame({"a": np.arange(rows, dtype="float64"), "b": np.ones(rows)})
    src = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), src, row_group_size=10)
    client.registry.register("reg", LinearRegression().fit(df[["a", "b"]], df["a"]), data=df[["a", "b"]])
    out = tmp_path / "scored"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "batch", "score", "reg", "--input", str(src),
                             "--output", str(out), "--chunk-rows", "10", "--workers", "2", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    workers: set[int] = set()
    try:
        def scoring() -> bool:        # two workers up and at least one chunk recorded: mid-run
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                done = json.loads((out / MANIFEST).read_text())["done"]
            except (OSError, ValueError, KeyError):
                return False
            workers.update(pid for pid in children(proc.pid)
                           if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes())
            return len(workers) >= 2 and len(done) >= 1

        wait_until(scoring, "the CLI to be scoring with two workers")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_until(lambda: not any(alive(pid) for pid in workers), "the orphaned workers to exit", timeout=30)
        assert len(json.loads((out / MANIFEST).read_text())["done"]) < rows // 10   # it really was mid-run
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_cluster_bundles_are_trust_checked_and_hash_verified(tmp_path: Path) -> None:
    """The driver ships only bytes the store's settings allow loading; a worker loads only bytes of the recorded hash."""
    from conveyor.errors import ArtifactIntegrityError, ArtifactUntrusted
    from conveyor.serving.batch_bundle import ModelBundle, bundle_from_loader
    from conveyor.store.artifacts import ArtifactStore

    model = SumModel()      # no materializer of its own: pickled, so loading it runs code
    with pytest.warns(UserWarning, match="was pickled"):
        stored = ArtifactStore(str(tmp_path / "a"), allow_pickle="true").put(model)
    with pytest.raises(ArtifactUntrusted, match="CONVEYOR_ALLOW_PICKLE"):
        ArtifactStore(str(tmp_path / "a"), allow_pickle="false").read_loadable(stored)
    data = ArtifactStore(str(tmp_path / "a"), allow_pickle="true").read_loadable(stored)
    bundle = ModelBundle(data=data, content_hash=stored.content_hash, materializer=stored.materializer, version="s:1")
    loaded, version = bundle()
    assert isinstance(loaded, SumModel) and version == "s:1"
    with pytest.raises(ArtifactIntegrityError, match="were not loaded"):
        ModelBundle(data=data + b"x", content_hash=stored.content_hash, materializer="pickle", version="s:1").load()
    assert bundle_from_loader(sum_loader).load()[1] == "sum:1"


def test_cluster_address_settings_and_a_bad_executor() -> None:
    from conveyor.config import load_settings
    from conveyor.errors import InvalidRequest

    assert load_settings(env={"RAY_ADDRESS": "10.0.0.5:6379"}).ray_address == "10.0.0.5:6379"
    assert load_settings(env={"RAY_ADDRESS": "a:1", "CONVEYOR_RAY_ADDRESS": "b:2"}).ray_address == "b:2"
    assert load_settings(env={}).ray_address is None
    with pytest.raises(InvalidRequest, match="cannot score batches. Use one of: process, ray, dask"):
        score_batch(sum_loader, "in.parquet", "out", model_version="sum:1", executor="spark")
    with pytest.raises(InvalidRequest, match="Add --executor ray"):
        score_batch(sum_loader, "in.parquet", "out", model_version="sum:1", address="10.0.0.5:6379")


def test_the_ray_scorers_idle_time_is_seconds_from_zero_up(tmp_path) -> None:
    from conveyor.config import load_settings
    from conveyor.errors import ConfigurationError

    assert load_settings(env={}, cwd=tmp_path).ray_batch_idle_s == 600
    assert load_settings(env={"CONVEYOR_RAY_BATCH_IDLE_S": "0"}, cwd=tmp_path).ray_batch_idle_s == 0
    assert load_settings(env={"CONVEYOR_RAY_BATCH_IDLE_S": "2.5"}, cwd=tmp_path).ray_batch_idle_s == 2.5
    with pytest.raises(ConfigurationError, match="CONVEYOR_RAY_BATCH_IDLE_S='soon' is not a number of seconds"):
        load_settings(env={"CONVEYOR_RAY_BATCH_IDLE_S": "soon"}, cwd=tmp_path)
    with pytest.raises(ConfigurationError, match="CONVEYOR_RAY_BATCH_IDLE_S='-1' must be 0 or more"):
        load_settings(env={"CONVEYOR_RAY_BATCH_IDLE_S": "-1"}, cwd=tmp_path)


def test_ray_scorers_take_every_cpu_round_the_nodes() -> None:
    from conveyor.serving.batch_cluster import placements, scorer_names

    nodes = [("a" * 56, 2), ("b" * 56, 1)]
    assert placements(nodes, None) == [("a" * 56, 0), ("b" * 56, 0), ("a" * 56, 1)]
    assert placements(nodes, 2) == [("a" * 56, 0), ("b" * 56, 0)]
    names = scorer_names("k" * 12, nodes, None)
    assert len(set(names)) == 3 and all(n.startswith("scorer-kkkkkkkkkkkk-") for n in names)


def test_a_scorer_sees_when_a_source_file_it_imported_changes(tmp_path, monkeypatch) -> None:
    import importlib.util
    import os
    import sys

    from conveyor.serving.batch_cluster import CodeStamps

    source = tmp_path / "scored_module_a1.py"
    source.write_text("FACTOR = 2\n")
    spec = importlib.util.spec_from_file_location("scored_module_a1", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stamps = CodeStamps()
    stamps.note()
    assert str(source) not in stamps.stamps
    monkeypatch.setitem(sys.modules, "scored_module_a1", module)   # imported after the first look
    stamps.note()
    assert str(source) in stamps.stamps
    assert not any("site-packages" in p for p in stamps.stamps), "installed packages are not the project's code"
    assert stamps.changed() is None
    source.write_text("FACTOR = 3\n")
    later = source.stat().st_mtime + 5
    os.utime(source, (later, later))
    assert stamps.changed() == str(source)
    fresh = CodeStamps()
    fresh.note()
    source.unlink()
    assert fresh.changed() == str(source)
