"""Executors return as soon as the last step is done, whatever the steps started, and leak nothing;
timed-out attempts never overlap their retry, and ``retry_on`` decides whether a timeout is retried."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from conveyor.errors import StepFailed
from tests.conftest import REPO
from tests.executors import pipelines as p
from tests.processes import alive, wait_until

EXECUTORS = ["thread", "process"]


def _marked(marker: str) -> list[int]:
    """Live, non-zombie processes whose environment carries ``marker`` (inherited by every descendant)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes() and b") Z" not in (entry / "stat").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_process_executor_returns_promptly_and_leaves_no_process_or_semaphore(settings, tmp_path: Path) -> None:
    """loky (cross_val_score n_jobs=2), a multiprocessing pool, a non-daemon thread and a ``sleep 1000``
    child, each left behind by a step: the CLI run exits by itself, nothing survives, nothing leaks."""
    marker = f"CVTEST_LIFETIME_{uuid.uuid4().hex}"
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CVTEST_PIDS": str(pids), marker: "1"}
    target = f"{Path(p.__file__)}:leaves_things"
    try:
        # Before the fix this waited ~5 minutes for loky's idle workers: the timeout below fails it.
        proc = subprocess.run([sys.executable, "-m", "conveyor.cli.main", "run", target, "--executor", "process",
                               "--json"], capture_output=True, text=True, env=env, timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert "leaked" not in proc.stderr and "resource_tracker" not in proc.stderr, proc.stderr
        recorded = {name: [int(x) for x in (pids / name).read_text().split()] for name in ("loky", "pool", "sleep")}
        assert all(recorded.values()), recorded        # each step really had processes of its own running
        assert [pid for pids_ in recorded.values() for pid in pids_ if alive(pid)] == []
        assert _marked(marker) == []                   # no process started under the run survives
    finally:
        for pid in _marked(marker):
            os.kill(pid, 9)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cli_run_on_threads_exits_though_a_step_left_a_thread_running(settings, tmp_path: Path) -> None:
    """A non-daemon thread left by a step body (it waits 1000 s) would keep ``conveyor run`` alive at
    interpreter exit; the command says so and exits with the run's own code."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CVTEST_PIDS": str(tmp_path / "pids")}
    proc = subprocess.run([sys.executable, "-m", "conveyor.cli.main", "run",
                           f"{Path(p.__file__)}:leaves_threads_and_pools", "--executor", "thread"],
                          capture_output=True, text=True, env=env, timeout=100)
    assert proc.returncode == 0, proc.stderr
    assert "not waiting for 1 thread(s) left running by step code: left-behind" in proc.stderr
    listing = subprocess.run([sys.executable, "-m", "conveyor.cli.main", "runs", "list", "--json"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert '"succeeded"' in listing.stdout, listing.stdout + listing.stderr


@pytest.mark.timeout(180)
def test_thread_executor_returns_with_pools_and_threads_left_running(client, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CVTEST_PIDS", str(tmp_path / "pids"))
    try:
        run = p.leaves_threads_and_pools.run(executor="thread", client=client)
        assert run.status == "succeeded"
        assert run.output("pool_left") == 6 and run.output("thread_left") == "left"
        assert any(t.name == "left-behind" and t.is_alive() for t in threading.enumerate())   # still running
    finally:
        p.stop_thread.set()
        pool = getattr(p.pool_left, "keep", None)
        if pool is not None:
            pool.terminate()


def _journal(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "journal"
    monkeypatch.setenv("CVTEST_JOURNAL", str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("executor", EXECUTORS)
def test_timed_out_attempt_never_overlaps_its_retry(client, tmp_path: Path, monkeypatch, executor: str) -> None:
    journal = _journal(tmp_path, monkeypatch)
    run = p.timed_out_retry.run(seconds=5.0, executor=executor, client=client)
    assert run.steps["slow_first"].attempts == 2
    lines = journal.read_text().split("\n")[:-1]
    events = [" ".join(line.split()[:2]) for line in lines]
    assert lines[-2].endswith("overlap=False")     # when the retry started, the first attempt was over
    if executor == "thread":   # the retry waited for the first attempt to finish
        assert events == ["start 1", "end 1", "start 2", "end 2"]
        assert "waits for it to finish" in client.metadata.steps.logs(run.id, "slow_first")[0][2]
    else:                      # the first attempt was stopped (its own process): it never wrote its end marker
        first_pid, second_pid = int(lines[0].split()[2]), int(lines[1].split()[2])
        assert events == ["start 1", "start 2", "end 2"]
        assert first_pid != second_pid and not alive(first_pid)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_timeout_not_in_retry_on_is_not_retried(client, tmp_path: Path, monkeypatch, executor: str) -> None:
    journal = _journal(tmp_path, monkeypatch)
    with pytest.raises(StepFailed, match="ran longer than its timeout of 1s"):
        p.timed_out_no_retry.run(seconds=4.0, executor=executor, client=client)
    assert journal.read_text().split("\n")[:-1] == ["start 1"]


def test_step_timeout_is_public() -> None:
    import conveyor
    from conveyor.errors import StepTimeout
    from conveyor.runtime.worker import StepTimeout as FromWorker

    assert conveyor.StepTimeout is StepTimeout is FromWorker


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [9, 2], ids=["SIGKILL", "SIGINT"])
def test_killed_or_interrupted_run_takes_its_workers_and_their_children_along(settings, tmp_path: Path,
                                                                               signum: int) -> None:
    marker = f"CVTEST_LIFETIME_{uuid.uuid4().hex}"
    journal = tmp_path / "journal"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CVTEST_JOURNAL": str(journal), marker: "1"}
    proc = subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "run", f"{Path(p.__file__)}:blocks",
                             "--executor", "process", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    try:
        def running() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            return journal.exists() and journal.read_text().startswith("running")

        wait_until(running, "the step to be running")
        attempt_pid, sleep_pid = (int(x) for x in journal.read_text().split()[1:3])
        assert len(_marked(marker)) >= 4          # the CLI, a worker, the attempt and its sleep child
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=60)
        if signum == 2:   # Ctrl-C: the run is cancelled, the CLI says so and exits 130
            assert proc.returncode == 130 and "cancelled" in err.decode(), err.decode()
        wait_until(lambda: _marked(marker) == [], "every process of the run to exit", timeout=30)
        assert not alive(attempt_pid) and not alive(sleep_pid)
    finally:
        for pid in _marked(marker):
            os.kill(pid, 9)
        if proc.poll() is None:
            proc.kill()
