"""Checkpoints and preemption (runtime/checkpoint.py): a retried, preempted or resumed attempt
continues from the last checkpoint; SIGTERM to a worker ends its attempt ``preempted``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.errors import ConveyorError
from tests.conftest import REPO, free_port
from tests.processes import alive, wait_until
from tests.runtime import preempt_pipelines as pp

PIPELINES = Path(pp.__file__)


def _driver(settings, target: str, folder: Path, *params: str, grace: float = 20.0, executor: str = "process",
            **extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_HOME": str(settings.home), "CONVEYOR_MAX_WORKERS": "1",
           "CONVEYOR_PREEMPT_GRACE_S": str(grace), **extra}
    return subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "run", f"{PIPELINES}:{target}",
                             "--executor", executor, "-p", f"folder={folder}", *params, "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _attempt_lines(folder: Path) -> list[list[str]]:
    return [ln.split() for ln in pp.journal(str(folder)) if ln.startswith("attempt")]


def _waiting(proc: subprocess.Popen[bytes], check, what: str, timeout: float = 120) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the driver exited before {what}: "
                                 + (proc.stderr.read().decode() if proc.stderr else ""))
        return bool(check())

    wait_until(ready, what, timeout=timeout)


def test_checkpoint_outside_a_step_is_a_clear_error() -> None:
    with pytest.raises(ConveyorError, match=r"cv.checkpoint\(\) was called outside a running step"):
        cv.checkpoint({"epoch": 1})
    assert cv.preempted() is False


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_retried_attempt_continues_from_the_last_checkpoint(client, tmp_path: Path, executor: str) -> None:
    folder = tmp_path / "work"
    run = pp.counting.run(folder=str(folder), until=5, client=client, executor=executor)
    assert run.output("counts_up") == 2                      # the retry started where the checkpoint was
    assert pp.journal(str(folder)) == [f"count {i}" for i in (0, 1, 2, 2, 3, 4)]
    rows = [a for a in client.metadata.steps.attempts(run.id) if a["name"] == "counts_up"]
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "failed"), (2, "completed")]
    assert rows[0]["bytes_written"] > 0                       # its checkpoints went through the artifact store


def _preempt_kill_and_resume(client, settings, folder: Path, executor: str, **env: str) -> None:
    """Run the SGD pipeline, SIGTERM its worker mid-epoch, SIGKILL the worker of the next attempt
    mid-epoch, resume; at most one epoch is done twice and the attempt rows tell what happened."""
    epochs = 8
    # the process executor runs the body in a child of the worker; a Ray worker runs it itself
    worker_field = 5 if executor == "process" else 3
    proc = _driver(settings, "sgd", folder, "-p", f"epochs={epochs}", "-p", "epoch_s=0.6", executor=executor, **env)
    try:
        _waiting(proc, lambda: "epoch 2" in pp.journal(str(folder)), "the third epoch to start")
        os.kill(int(_attempt_lines(folder)[0][worker_field]), signal.SIGTERM)   # a spot instance taken back
        (run,) = client.list_runs()

        def preempted() -> bool:
            return any(a["status"] == "preempted" for a in client.metadata.steps.attempts(run.id))

        _waiting(proc, preempted, "the preempted attempt to be recorded")
        # the engine ran the call again; it continues from its checkpoint, then its worker dies for good
        _waiting(proc, lambda: len(_attempt_lines(folder)) == 2 and pp.journal(str(folder))[-1].startswith("epoch")
                 and pp.journal(str(folder))[-1] != f"epoch {int(_attempt_lines(folder)[1][7])}",
                 "the next attempt to be one epoch in")
        second = _attempt_lines(folder)[1]
        os.kill(int(second[worker_field]), signal.SIGKILL)
        proc.communicate(timeout=120)
        assert proc.returncode != 0
        wait_until(lambda: not alive(int(second[3])), "the killed worker's attempt to stop", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = client.resume(run.id, executor=executor)
    assert resumed.status == "succeeded" and resumed.output("train_sgd") > 0.9
    started = [int(ln.split()[1]) for ln in pp.journal(str(folder)) if ln.startswith("epoch")]
    assert sorted(set(started)) == list(range(epochs))
    assert len(started) - epochs <= 1                     # at most one epoch was done twice
    froms = [int(a[7]) for a in _attempt_lines(folder)]
    assert froms[0] == 0 and froms[1] >= 3 and froms[2] > froms[1]   # each attempt continued from a checkpoint
    rows = client.metadata.steps.attempts(run.id)
    assert [a["status"] for a in rows if a["name"] == "train_sgd"][:2] == ["preempted", "failed"]
    assert rows[-1]["status"] == "completed" and {a["executor"] for a in rows} == {executor}
    assert max(a["preemptions"] or 0 for a in rows) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_then_sigkill_of_the_worker_and_resume_redo_at_most_one_epoch(client, settings,
                                                                               tmp_path: Path) -> None:
    _preempt_kill_and_resume(client, settings, tmp_path / "work", "process")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_same_on_the_ray_executor(settings, tmp_path: Path, ray_cluster,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)   # for the driver, and the resume in this process
    settings = load_settings()                                # executors take the address from these
    client = Client(settings)
    try:
        _preempt_kill_and_resume(client, settings, tmp_path / "work", "ray")
    finally:
        client.close()


def _sigterm_attempt_then_finish(proc: subprocess.Popen[bytes], folder: Path, ready, what: str) -> None:
    """Once ``ready``, SIGTERM the process running the first attempt (the worker running the attempt's
    child); the driver must then finish the run by itself."""
    try:
        _waiting(proc, ready, what)
        os.kill(int(_attempt_lines(folder)[0][5]), signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_step_that_never_checkpoints_is_preempted_when_the_grace_period_ends(client, settings,
                                                                                tmp_path: Path) -> None:
    folder = tmp_path / "work"
    proc = _driver(settings, "stubborn", folder, "-p", "seconds=3", grace=1.0)
    _sigterm_attempt_then_finish(proc, folder, lambda: _attempt_lines(folder), "the step to start")
    (run,) = client.list_runs()
    assert run.status == "succeeded" and [int(a[1]) for a in _attempt_lines(folder)] == [1, 2]
    rows = client.metadata.steps.attempts(run.id)
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "preempted"), (2, "completed")]
    assert "still running 1s later" in str(rows[0]["error"])
    assert rows[1]["preemptions"] == 1 and run.steps["ignores_preemption"].attempts == 2


def _preempt_and_continue(client, settings, folder: Path, executor: str, **env: str) -> None:
    """Run the SGD pipeline, SIGTERM the process running its attempt mid-epoch; the run goes on by
    itself from the checkpoint, redoing at most one epoch, and the attempt rows tell what happened."""
    epochs = 8
    proc = _driver(settings, "sgd", folder, "-p", f"epochs={epochs}", "-p", "epoch_s=0.6", executor=executor, **env)
    _sigterm_attempt_then_finish(proc, folder, lambda: "epoch 2" in pp.journal(str(folder)), "the third epoch to start")
    (run,) = client.list_runs()
    assert run.status == "succeeded" and run.output("train_sgd") > 0.9
    started = [int(ln.split()[1]) for ln in pp.journal(str(folder)) if ln.startswith("epoch")]
    assert sorted(set(started)) == list(range(epochs)) and len(started) - epochs <= 1
    froms = [int(a[7]) for a in _attempt_lines(folder)]
    assert len(froms) == 2 and froms[0] == 0 and froms[1] >= 3     # the second continued from the checkpoint
    rows = [a for a in client.metadata.steps.attempts(run.id) if a["name"] == "train_sgd"]
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "preempted"), (2, "completed")]
    assert {a["executor"] for a in rows} == {executor} and rows[1]["preemptions"] == 1
    assert "checkpoint of attempt 1 was saved" in str(rows[0]["error"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_to_a_dask_worker_preempts_and_the_call_continues_from_its_checkpoint(
        client, settings, tmp_path: Path, dask_cluster: str) -> None:
    pytest.importorskip("distributed")
    _preempt_and_continue(client, settings, tmp_path / "work", "dask", DASK_SCHEDULER_ADDRESS=dask_cluster)


def _task(settings, folder: Path, run_id: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The exported task of the SGD step, as its target starts it (its own process, the entry point)."""
    return subprocess.Popen([sys.executable, "-m", "conveyor", "step", "exec", "--project", str(REPO),
                             "--pipeline", f"{PIPELINES.relative_to(REPO)}:sgd", "--node", "train_sgd",
                             "--run-id", run_id, "-p", f"folder={folder}", "-p", "epochs=8", "-p", "epoch_s=0.6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO))


def _epoch_in(proc: subprocess.Popen[bytes], folder: Path, attempts: int) -> None:
    """Wait until the ``attempts``-th attempt is one epoch past the one it started from."""
    def ready() -> bool:
        lines = _attempt_lines(folder)
        last = pp.journal(str(folder))[-1]
        return len(lines) == attempts and last.startswith("epoch") and last != f"epoch {lines[-1][7]}"

    _waiting(proc, ready, f"attempt {attempts} to be one epoch in")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("records", ["database", "root"])
def test_sigterm_to_an_exported_task_preempts_and_its_retries_continue_from_the_checkpoint(
        client, settings, tmp_path: Path, records: str) -> None:
    """SIGTERM to the task's process: its attempt checkpoints and ends preempted, the task exits 143;
    the target's retry continues from the checkpoint, is SIGKILLed mid-epoch, and the next retry
    finishes, having redone at most one epoch."""
    folder, epochs, run_id = tmp_path / "work", 8, "exported-1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(PYTHONPATH=str(REPO), CONVEYOR_HOME=str(settings.home), CONVEYOR_PREEMPT_GRACE_S="20",
               CONVEYOR_ARTIFACT_ROOT=settings.artifact_root)
    if records == "database":
        env["CONVEYOR_METADATA_URL"] = settings.metadata_url
    first = _task(settings, folder, run_id, env)
    second = third = None
    try:
        _waiting(first, lambda: "epoch 2" in pp.journal(str(folder)), "the third epoch to start")
        assert int(_attempt_lines(folder)[0][5]) == first.pid          # the attempt runs in a child of the task
        first.send_signal(signal.SIGTERM)                               # the instance is taken back
        out, err = first.communicate(timeout=120)
        assert first.returncode == 143, err.decode()
        assert f"Step 'train_sgd' was preempted in run {run_id}" in err.decode()
        second = _task(settings, folder, run_id, env)                   # the target retries the task
        _epoch_in(second, folder, 2)
        second.kill()                                                   # and this time the machine just dies
        second.communicate(timeout=60)
        wait_until(lambda: not alive(int(_attempt_lines(folder)[1][3])), "the killed task's attempt to stop",
                   timeout=30)
        third = _task(settings, folder, run_id, env)
        out, err = third.communicate(timeout=180)
        assert third.returncode == 0, err.decode()
    finally:
        for proc in (first, second, third):
            if proc is not None and proc.poll() is None:
                proc.kill()
    started = [int(ln.split()[1]) for ln in pp.journal(str(folder)) if ln.startswith("epoch")]
    assert sorted(set(started)) == list(range(epochs)) and len(started) - epochs <= 1   # at most one epoch twice
    froms = [int(a[7]) for a in _attempt_lines(folder)]
    assert len(froms) == 3 and froms[0] == 0 and froms[1] >= 3 and froms[2] > froms[1]
    if records == "database":
        rows = [a for a in client.metadata.steps.attempts(run_id) if a["name"] == "train_sgd"]
        assert rows[0]["status"] == "preempted" and rows[0]["executor"] == "task"
        assert "checkpoint of attempt 1 was saved" in str(rows[0]["error"])
        assert rows[-1]["status"] == "completed"
        statuses = [s.status for s in client.metadata.steps.for_run(run_id) if s.name == "train_sgd"]
        assert statuses[0] == "cancelled" and statuses[-1] == "succeeded"


@pytest.fixture
def dask_no_nanny(tmp_path: Path) -> Iterator[str]:
    """A Dask scheduler and one worker started as a container runs it (``dask worker --no-nanny``)."""
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = str(Path(sys.executable).parent / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([dask, "worker", address, "--no-nanny", "--nthreads", "1", "--no-dashboard",
                                   "--local-directory", str(tmp_path / "dask")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                                             "PYTHONPATH": str(REPO)}))
    try:
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as probe:
            probe.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_same_on_a_dask_worker_without_a_nanny(client, settings, tmp_path: Path, dask_no_nanny: str) -> None:
    _preempt_and_continue(client, settings, tmp_path / "work", "dask", DASK_SCHEDULER_ADDRESS=dask_no_nanny)
