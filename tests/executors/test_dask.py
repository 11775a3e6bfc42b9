"""What only the Dask executor has: one connection per process, placement by declared worker resources,
the settings that select it. What it shares with every executor is in test_conformance.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import load_settings
from conveyor.errors import ConfigurationError, StepFailed
from tests.executors import pipelines as ep

pytest.importorskip("distributed")

from conveyor.executors import dask as dx  # noqa: E402


def _our_clients(address: str) -> int:
    from distributed import Client

    with Client(address, set_as_default=False) as probe:   # itself one of the clients it counts
        return probe.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients)) - 1


@pytest.fixture
def on_dask(dask_cluster: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """DASK_SCHEDULER_ADDRESS names the session's cluster (in the settings the client passes the executor)."""
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster)
    return dask_cluster


@pytest.mark.slow
def test_runs_reuse_one_connection_and_refuse_a_missing_gpu_at_submission(
        client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_dask: str, dask_cluster: str) -> None:
    monkeypatch.setenv("CONVEYOR_EXECUTOR", "dask")
    assert load_settings().executor == "dask" and load_settings().dask_scheduler_address == dask_cluster
    ep.retried.run(folder=str(tmp_path / "a"), client=client, executor="dask")
    connected = dx.connect(dask_cluster)
    before = _our_clients(dask_cluster)
    ep.retried.run(folder=str(tmp_path / "b"), client=client, executor="dask")
    assert dx.connect(dask_cluster) is connected and _our_clients(dask_cluster) == before

    with pytest.raises(StepFailed) as err:
        ep.gpu_step.run(client=client, executor="dask")
    message = str(err.value)
    assert "Step 'needs_a_gpu' asks for gpus=1" in message and "declares the resource 'GPU'" in message
    assert "--resources" in message
    assert err.value.run.steps["needs_a_gpu"].attempts == 0          # refused before it ran anywhere


def _task(**resources: object) -> object:
    from conveyor.runtime.worker import StepTask

    return StepTask(run_id="r", step_run_id="s", node_name="train", step_name="train", args={}, outputs=("output",),
                    multiple_outputs=False, retries=0, retry_on=(Exception,), backoff=0.1, backoff_max=1.0,
                    timeout=None, artifact_root="/tmp", inline_max_bytes=10, resources=dict(resources))


def test_step_hints_become_the_resources_workers_declare() -> None:
    declared = [{"GPU": 2.0, "MEMORY": 16 * 2**30}, {"CPU": 8.0}]
    wanted = dx.worker_resources(_task(cpus=4, memory="8Gi", gpus=1), declared, "tcp://s:8786")
    assert wanted == {"CPU": 4.0, "MEMORY": float(8 * 2**30), "GPU": 1.0}
    # a hint no worker declares is no constraint, except a GPU
    assert dx.worker_resources(_task(cpus=4, memory="1G"), [{}], "tcp://s:8786") == {}
    with pytest.raises(ConfigurationError, match=r"asks for gpus=4 \(GPU=4\), more than any worker .* GPU=2"):
        dx.worker_resources(_task(gpus=4), declared, "tcp://s:8786")
    with pytest.raises(ConfigurationError, match=r"memory='lots' is not a size"):
        dx.worker_resources(_task(memory="lots"), declared, "tcp://s:8786")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_step_whose_worker_dies_runs_again_on_another_worker(client, tmp_path: Path,
                                                                on_dask: str, dask_cluster: str) -> None:
    from distributed import Client

    folder = tmp_path / "work"
    run = ep.worker_dies.run(folder=str(folder), client=client, executor="dask")
    assert run.status == "succeeded" and run.output("kills_its_worker") == "survived"
    assert (folder / "kills").read_text() == "xx"          # the first execution died with its worker
    with Client(dask_cluster, set_as_default=False) as probe:   # the nanny brought the worker back
        probe.wait_for_workers(2, timeout=60)
