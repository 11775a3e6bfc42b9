"""Batch scoring on a real two-node Ray cluster (and on Dask): the local path's output, byte for byte,
chunks spread over both nodes, the model loaded once per scorer and only with a matching hash, a
killed scorer's chunk redone, a killed driver resumed from the ledger; scorers kept warm for the next
command, restarted when the code they imported changed, ended when idle."""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.errors import ArtifactIntegrityError
from conveyor.serving.batch import MANIFEST, score_batch
from conveyor.serving.batch_bundle import ModelBundle
from tests.processes import wait_until

pytestmark = pytest.mark.slow
ROWS, CHUNK = 10_000, 1000


def _node() -> str:
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    return "local"


class Recorder:
    """``a * 2 + b``; notes every load (unpickling) and every chunk in ``folder``, can wait at a gate
    (chunks from row ``gate`` on wait for the file ``release``) or kill its worker once at row ``poison``."""

    def __init__(self, folder: str = "", gate: float | None = None, poison: float | None = None) -> None:
        self.folder, self.gate, self.poison = folder, gate, poison

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.folder:
            Path(self.folder, f"load-{os.getpid()}-{uuid.uuid4().hex}").write_text(_node())

    def predict(self, X):
        X = np.asarray(X)
        first = float(X[0, 0])
        if self.folder:
            Path(self.folder, f"chunk-{os.getpid()}-{int(first)}").write_text(_node())
        if self.poison is not None and (X[:, 0] == self.poison).any():
            marker = Path(self.folder, "killed")
            if not marker.exists():
                marker.write_text("once")
                os.kill(os.getpid(), signal.SIGKILL)
        if self.gate is not None and first >= self.gate:
            release = Path(self.folder, "release")
            deadline = time.monotonic() + 120
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return X[:, 0] * 2 + X[:, 1]


def recorder_loader(folder: str = "", gate: float | None = None, poison: float | None = None) -> tuple[object, str]:
    return Recorder(folder, gate, poison), "lin:1"


@pytest.fixture(autouse=True)
def _session_cluster_only(request) -> None:
    """A Ray connection left by an earlier test to another (local) instance would hide the cluster."""
    if "ray_cluster" in request.fixturenames and "ray" in sys.modules:
        from conveyor.executors.ray_connect import connected_address, disconnect, same_cluster

        current = connected_address()
        if current and not same_cluster(current, request.getfixturevalue("ray_cluster").address):
            disconnect()


@pytest.fixture(autouse=True)
def _short_lived_scorers(monkeypatch) -> None:
    """Scorers of this module outlive a command by a minute, not the default ten (drivers started here inherit it)."""
    monkeypatch.setenv("CONVEYOR_RAY_BATCH_IDLE_S", "60")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """The input, and the local 2-process path's output for it: what every cluster run must equal."""
    folder = tmp_path_factory.mktemp("batch-cluster")
    df = pd.DataFrame({"a": np.arange(ROWS, dtype="float64"), "b": np.ones(ROWS)})
    src = folder / "in.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), src, row_group_size=500)
    ref = folder / "local"
    score_batch(recorder_loader, str(src), str(ref), model_version="lin:1", workers=2, chunk_rows=CHUNK,
                progress=False)
    return src, ref


def _assert_same_output(out: Path, ref: Path) -> None:
    parts = sorted(p.name for p in ref.glob("part-*.parquet"))
    assert parts == sorted(p.name for p in out.glob("part-*.parquet")) and len(parts) == ROWS // CHUNK
    for name in parts:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    mine, theirs = (json.loads((d / MANIFEST).read_text()) for d in (out, ref))
    assert mine["key"] == theirs["key"] and mine["done"] == theirs["done"]
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert table.num_rows == ROWS and len(set(table.column("a").to_pylist())) == ROWS


def _folder(tmp_path: Path) -> Path:
    notes = tmp_path / "notes"
    notes.mkdir()
    return notes


def test_ray_writes_the_local_output_over_both_nodes_loading_the_model_once_per_worker(
        ray_cluster, data, tmp_path: Path) -> None:
    src, ref = data
    notes = _folder(tmp_path)
    out = tmp_path / "ray"
    result = score_batch(functools.partial(recorder_loader, str(notes)), str(src), str(out), model_version="lin:1",
                         workers=None, chunk_rows=CHUNK, progress=False, executor="ray", address=ray_cluster.address)
    assert result.rows_scored == ROWS and result.chunks_scored == ROWS // CHUNK
    _assert_same_output(out, ref)
    chunks = {p.name.split("-")[1]: p.read_text() for p in notes.glob("chunk-*")}
    loads = [p.name.split("-")[1] for p in notes.glob("load-*")]
    assert len(set(chunks.values())) == 2, "every chunk ran on one node"
    assert sorted(loads) == sorted(set(loads)), "a worker process loaded the model twice"
    assert set(chunks) <= set(loads) and len(loads) < ROWS // CHUNK


def test_ray_never_loads_a_model_whose_bytes_do_not_match_the_hash(ray_cluster, data, tmp_path: Path) -> None:
    src, _ = data
    notes = _folder(tmp_path)
    good = pickle.dumps(Recorder(str(notes)))
    forged = ModelBundle(data=good, content_hash="sha256:" + "0" * 64, materializer="pickle", version="lin:1")
    out = tmp_path / "ray"
    with pytest.raises(ArtifactIntegrityError, match="not loaded"):
        score_batch(forged, str(src), str(out), model_version="lin:1", chunk_rows=CHUNK, progress=False,
                    executor="ray", address=ray_cluster.address)
    assert not list(notes.glob("load-*")) and not list(out.glob("part-*"))


def test_ray_redoes_the_chunk_of_a_killed_worker(ray_cluster, data, tmp_path: Path) -> None:
    src, ref = data
    notes = _folder(tmp_path)
    out = tmp_path / "ray"
    result = score_batch(functools.partial(recorder_loader, str(notes), poison=2500.0), str(src), str(out),
                         model_version="lin:1", chunk_rows=CHUNK, progress=False, executor="ray",
                         address=ray_cluster.address)
    assert (notes / "killed").exists(), "no worker was killed"
    assert result.chunks_scored == ROWS // CHUNK
    _assert_same_output(out, ref)


DRIVER = """
import functools, sys
from conveyor.serving.batch import score_batch
from tests.serving.test_batch_cluster import recorder_loader
src, out, notes, address = sys.argv[1:]
score_batch(functools.partial(recorder_loader, notes, gate=5000.0), src, out, model_version="lin:1",
            chunk_rows=1000, progress=False, executor="ray", address=address)
"""


def test_ray_driver_killed_mid_run_resumes_from_the_ledger(ray_cluster, data, tmp_path: Path) -> None:
    from tests.conftest import REPO

    src, ref = data
    notes = _folder(tmp_path)
    out = tmp_path / "ray"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(src), str(out), str(notes), ray_cluster.address],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def first_half_done() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                return len(json.loads((out / MANIFEST).read_text())["done"]) >= 5
            except (OSError, ValueError, KeyError):
                return False

        wait_until(first_half_done, "the driver to finish the chunks before the gate", timeout=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = json.loads((out / MANIFEST).read_text())["done"]
    assert len(done) < ROWS // CHUNK, "the run was not mid-way"
    (notes / "release").write_text("go")
    result = score_batch(functools.partial(recorder_loader, str(notes), gate=5000.0), str(src), str(out),
                         model_version="lin:1", chunk_rows=CHUNK, progress=False, executor="ray",
                         address=ray_cluster.address)
    assert result.chunks_skipped == len(done) and result.chunks_scored == ROWS // CHUNK - len(done)
    _assert_same_output(out, ref)


def test_dask_writes_the_local_output(dask_cluster, data, tmp_path: Path) -> None:
    src, ref = data
    out = tmp_path / "dask"
    result = score_batch(recorder_loader, str(src), str(out), model_version="lin:1", workers=None,
                         chunk_rows=CHUNK, progress=False, executor="dask", address=dask_cluster)
    assert result.rows_scored == ROWS
    _assert_same_output(out, ref)


def test_cli_scores_a_registered_model_on_ray(client, ray_cluster, data, tmp_path: Path, monkeypatch) -> None:
    from sklearn.linear_model import LinearRegression
    from typer.testing import CliRunner

    from conveyor.cli.batch import app

    src, _ = data
    df = pq.read_table(src).to_pandas()
    model = LinearRegression().fit(df[["a", "b"]], df["a"] * 3 + 1)
    client.registry.register("reg", model, data=df[["a", "b"]])
    version = client.registry.resolve("reg")
    out = tmp_path / "ray"       # in this process: the session's Ray connection; the group has one command
    monkeypatch.setenv("CONVEYOR_RAY_ADDRESS", ray_cluster.address)
    proc = CliRunner().invoke(app, ["reg", "--input", str(src), "--output", str(out),
                                    "--chunk-rows", str(CHUNK), "--executor", "ray", "--json"])
    assert proc.exit_code == 0, proc.output
    summary = json.loads(proc.stdout)
    assert summary["rows_scored"] == ROWS and summary["model_version"] == "reg:1"
    key = json.loads((out / MANIFEST).read_text())["key"]     # the same key as a local run: resumable either way
    assert key["model_digest"] == client.metadata.artifacts.get(version.artifact_id).content_hash
    assert key["features"] == ["a", "b"] and "executor" not in key
    table = pq.read_table(sorted(out.glob("part-*.parquet"))).to_pandas()
    assert table["a"].is_unique and len(table) == ROWS and set(table["model_version"]) == {"reg:1"}
    np.testing.assert_allclose(table["prediction"], model.predict(table[["a", "b"]]))


def test_ray_reads_and_writes_s3(s3_emulator, ray_cluster, data, tmp_path: Path) -> None:
    import s3fs

    src, ref = data
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": s3_emulator.url, "region_name": "us-east-1"}}
    fs = s3fs.S3FileSystem(**options)
    bucket = f"batch-{uuid.uuid4().hex[:8]}"
    import boto3

    boto3.client("s3", endpoint_url=s3_emulator.url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    fs.put_file(str(src), f"{bucket}/in.parquet")
    result = score_batch(recorder_loader, f"s3://{bucket}/in.parquet", f"s3://{bucket}/scored",
                         model_version="lin:1", chunk_rows=CHUNK, progress=False, storage_options=options,
                         executor="ray", address=ray_cluster.address)
    assert result.rows_scored == ROWS
    for p in fs.glob(f"{bucket}/scored/part-*.parquet"):
        assert fs.cat_file(p) == (ref / p.rsplit("/", 1)[1]).read_bytes()
    assert len(fs.glob(f"{bucket}/scored/part-*.parquet")) == ROWS // CHUNK
    assert json.loads(fs.cat_file(f"{bucket}/scored/{MANIFEST}"))["done"] == json.loads(
        (ref / MANIFEST).read_text())["done"]


# --- scorers kept between commands ------------------------------------------------------------

def _driver(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _notes(notes: Path, kind: str) -> set[int]:
    return {int(p.name.split("-")[1]) for p in notes.glob(f"{kind}-*")}


ONE_COMMAND = """
import functools, sys
from conveyor.serving.batch import score_batch
from tests.serving.test_batch_cluster import recorder_loader
src, out, notes, address = sys.argv[1:]
score_batch(functools.partial(recorder_loader, notes), src, out, model_version="lin:1", chunk_rows=1000,
            progress=False, executor="ray", address=address)
"""


def test_ray_a_second_command_scores_on_the_warm_scorers_without_loading_the_model_again(
        ray_cluster, data, tmp_path: Path) -> None:
    from tests.conftest import REPO

    src, ref = data
    notes = _folder(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    _driver(ONE_COMMAND, str(src), str(first), str(notes), ray_cluster.address, cwd=REPO)
    loaded, scored = _notes(notes, "load"), _notes(notes, "chunk")
    assert loaded and scored <= loaded
    for p in notes.glob("chunk-*"):
        p.unlink()
    _driver(ONE_COMMAND, str(src), str(second), str(notes), ray_cluster.address, cwd=REPO)
    _assert_same_output(second, ref)
    assert _notes(notes, "load") == loaded, "a scorer loaded the same model again, or a new process scored"
    assert _notes(notes, "chunk") <= loaded


EDITABLE = """
import numpy as np
from pathlib import Path
import os

FACTOR = {factor}


class Model:
    def __init__(self, notes):
        self.notes = notes

    def __setstate__(self, state):
        self.__dict__.update(state)
        Path(self.notes, f"load-{{os.getpid()}}").write_text("")

    def predict(self, X):
        Path(self.notes, f"chunk-{{os.getpid()}}").write_text("")
        return np.asarray(X)[:, 0] * FACTOR
"""

EDITED_COMMAND = """
import sys
from conveyor.serving.batch import score_batch
from {module} import Model
src, out, notes, address = sys.argv[1:]
score_batch(lambda: (Model(notes), "m:1"), src, out, model_version="m:1", chunk_rows=1000, progress=False,
            executor="ray", address=address)
"""


def test_ray_a_scorer_whose_imported_code_changed_is_restarted_before_it_scores(
        ray_cluster, data, tmp_path: Path) -> None:
    src, _ = data
    notes = _folder(tmp_path)
    code = tmp_path / "code"     # the driver's working folder: Ray puts it on its workers' path
    code.mkdir()
    module = f"editable_{uuid.uuid4().hex[:8]}"
    source = code / f"{module}.py"
    source.write_text(EDITABLE.format(factor=2))
    command = EDITED_COMMAND.format(module=module)
    _driver(command, str(src), str(tmp_path / "before"), str(notes), ray_cluster.address, cwd=code)
    before = pq.read_table(tmp_path / "before").to_pandas()
    np.testing.assert_array_equal(before["prediction"], before["a"] * 2)
    old = _notes(notes, "chunk")
    source.write_text(EDITABLE.format(factor=3))
    stamp = source.stat().st_mtime + 5
    os.utime(source, (stamp, stamp))
    _driver(command, str(src), str(tmp_path / "after"), str(notes), ray_cluster.address, cwd=code)
    after = pq.read_table(tmp_path / "after").to_pandas()
    np.testing.assert_array_equal(after["prediction"], after["a"] * 3)
    new = _notes(notes, "chunk") - old
    assert new and not (new & old), "a chunk was scored by a process that imported the old code"


def _scorer_names(address: str, idle_s: float) -> list[str]:
    from conveyor.executors.ray_connect import connect
    from conveyor.serving.batch_cluster import pool_key, scorer_names, scoring_nodes

    connect(address)
    return scorer_names(pool_key(idle_s), scoring_nodes(), None)


def _alive_names(address: str) -> set[str]:
    import ray

    from conveyor.executors.ray_connect import connect

    connect(address)   # never a local Ray started by the call below
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "conveyor"}


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def test_ray_scorers_end_after_their_idle_time(ray_cluster, data, tmp_path: Path, monkeypatch) -> None:
    import ray

    src, ref = data
    notes = _folder(tmp_path)
    monkeypatch.setenv("CONVEYOR_RAY_BATCH_IDLE_S", "8")
    out = tmp_path / "ray"
    score_batch(functools.partial(recorder_loader, str(notes)), str(src), str(out), model_version="lin:1",
                workers=None, chunk_rows=CHUNK, progress=False, executor="ray", address=ray_cluster.address)
    _assert_same_output(out, ref)
    names = _scorer_names(ray_cluster.address, 8)   # one per CPU of the cluster: 2 on the head, 1 on the second node
    assert len(names) == 3
    assert set(names) <= _alive_names(ray_cluster.address), "the scorers did not stay after the command"
    pids = {ray.get(ray.get_actor(n, namespace="conveyor").describe.remote())["pid"] for n in names}
    assert pids == _notes(notes, "load")
    wait_until(lambda: not (set(names) & _alive_names(ray_cluster.address)), "the idle scorers to end", timeout=60)
    wait_until(lambda: all(_gone(pid) for pid in pids), "the idle scorers' processes to exit", timeout=60)


def test_ray_scorers_end_with_the_command_when_kept_for_no_time(ray_cluster, data, tmp_path: Path,
                                                                  monkeypatch) -> None:
    src, ref = data
    notes = _folder(tmp_path)
    monkeypatch.setenv("CONVEYOR_RAY_BATCH_IDLE_S", "0")
    before = _alive_names(ray_cluster.address)
    out = tmp_path / "ray"
    score_batch(functools.partial(recorder_loader, str(notes)), str(src), str(out), model_version="lin:1",
                chunk_rows=CHUNK, progress=False, executor="ray", address=ray_cluster.address)
    _assert_same_output(out, ref)
    pids = _notes(notes, "load")
    assert pids and _alive_names(ray_cluster.address) <= before, "scorers kept for no time were registered by name"
    wait_until(lambda: all(_gone(pid) for pid in pids), "the command's scorers to exit with it", timeout=60)


def test_ray_a_chunk_whose_scorer_ended_for_good_goes_to_a_new_scorer(ray_cluster, data, tmp_path: Path) -> None:
    import threading

    import ray

    src, ref = data
    notes = _folder(tmp_path)
    out = tmp_path / "ray"
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = score_batch(functools.partial(recorder_loader, str(notes), gate=5000.0), str(src),
                                            str(out), model_version="lin:1", workers=None, chunk_rows=CHUNK,
                                            progress=False, executor="ray", address=ray_cluster.address)
        except BaseException as exc:   # reported by the assertions below
            outcome["error"] = exc

    names = _scorer_names(ray_cluster.address, 60)
    driver = threading.Thread(target=run)
    driver.start()
    try:
        wait_until(lambda: any(int(p.name.split("-")[2]) >= 5000 for p in notes.glob("chunk-*")),
                   "a chunk to wait at the gate", timeout=120)
        for name in names:   # ended by Ray with no restart, chunks at the gate in flight
            ray.kill(ray.get_actor(name, namespace="conveyor"), no_restart=True)
    finally:
        (notes / "release").write_text("go")
        driver.join(180)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.chunks_scored == ROWS // CHUNK   # type: ignore[attr-defined]
    _assert_same_output(out, ref)
    # the killed scorers' processes are gone; the chunks they held were scored by new ones, which loaded the model
    assert any(not _gone(pid) for pid in _notes(notes, "load")), "no new scorer loaded the model"
    assert set(names) & _alive_names(ray_cluster.address), "no scorer was started again in a killed one's place"
