"""What every executor must do the same way. Each case runs once per executor that can run here
(thread, process, dask, ray: see conftest.py), configured only through the ``executor_name`` fixture:
failures, retries and ``retry_on``, captured logs, metrics and params, fan-out with a concurrency
limit and joins, conditions, a large output between steps, timeouts, cancellation, and resume after
the driver was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.errors import StepFailed
from tests.conftest import REPO
from tests.executors import pipelines as ep
from tests.processes import alive, wait_until
from tests.runtime import pipelines as p

PIPELINES = Path(ep.__file__)


@pytest.fixture(autouse=True)
def counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "counts"
    monkeypatch.setenv("CVTEST_COUNTS", str(folder))
    return folder


def test_failure_keeps_the_users_traceback_and_finishes_other_branches(client, executor_name: str) -> None:
    with pytest.raises(StepFailed) as err:
        p.branches.run(client=client, executor=executor_name)
    steps = err.value.run.steps
    assert steps["boom"].status == "failed" and "raise ValueError" in steps["boom"].traceback
    assert "ValueError: bad value 2" in str(err.value)
    assert steps["inc_2"].status == "skipped" and steps["slow_ok"].status == "succeeded"


def attempts_of(client, run_id: str, name: str) -> list[dict[str, object]]:
    return [a for a in client.metadata.steps.attempts(run_id) if a["name"] == name]


def test_retries_and_retry_on(client, tmp_path: Path, executor_name: str) -> None:
    folder = str(tmp_path / "work")
    run = ep.retried.run(folder=folder, client=client, executor=executor_name)
    assert run.steps["flaky_in"].attempts == 3 and (Path(folder) / "flaky").read_text() == "xxx"
    assert client.metadata.steps.logs(run.id, "flaky_in")[0][2].count("retrying in") == 2
    rows = attempts_of(client, run.id, "flaky_in")     # every attempt is recorded, the failed ones too
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert "ConnectionError" in str(rows[0]["error"]) and rows[2]["error"] is None
    assert {a["executor"] for a in rows} == {executor_name} and all(a["cpu_s"] is not None for a in rows)
    with pytest.raises(StepFailed, match="KeyError") as err:
        ep.not_retried.run(folder=folder, client=client, executor=executor_name)
    assert (Path(folder) / "permanent").read_text() == "x"
    (row,) = attempts_of(client, err.value.run.id, "permanent_in")
    assert row["status"] == "failed" and "KeyError" in str(row["error"])


def test_logs_metrics_and_params_are_captured(client, executor_name: str) -> None:
    run = p.logging_pipeline.run(client=client, executor=executor_name)
    logs = dict((name, text) for name, _a, text in client.metadata.steps.logs(run.id))
    assert "stdout line 1" in logs["chatty"] and "stderr line 1" in logs["chatty"]
    assert "a warning 1" in logs["chatty"] and "stdout line 2" not in logs["chatty"]
    curve = [(m.step, m.value) for m in client.metadata.tracking.metrics(run.id) if m.key == "loss"]
    assert sorted(curve) == [(0, 1.0), (0, 1.0), (1, 0.5), (1, 0.5), (2, 1 / 3), (2, 1 / 3)]
    assert run.params["attempt"] == 1


def most_at_once(lines: list[str]) -> int:
    """The largest number of elements running at the same moment, from their start/end lines."""
    events = sorted((float(t), 0 if kind == "end" else 1) for kind, _i, t in (ln.split() for ln in lines))
    running = most = 0
    for _t, starts in events:   # at equal times an end sorts first: touching intervals do not overlap
        running += 1 if starts else -1
        most = max(most, running)
    return most


@pytest.mark.timeout(180)
def test_fan_out_with_a_limit_joins_conditions_and_a_large_output(client, tmp_path: Path,
                                                                  executor_name: str) -> None:
    folder = tmp_path / "work"
    run = ep.conformance.run(folder=str(folder), mb=50, n=8, limit=2, client=client, executor=executor_name)
    assert run.status == "succeeded"
    assert run.output("array_total") == 50 * 131072 * 0.5             # 50 MiB crossed from one step to the next
    assert run.output("combine") == {"squares": [i * i for i in range(8)], "total": 50 * 131072 * 0.5}
    assert run.steps["taken"].status == "succeeded" and run.output("taken") == "taken 8"
    assert run.steps["not_taken"].status == "skipped"
    lines = ep.journal(str(folder))
    assert sorted(int(ln.split()[1]) for ln in lines if ln.startswith("start")) == list(range(8))
    assert most_at_once(lines) == 2            # never more than max_parallel, and the limit was reached
    sizes = [a.size for a in client.metadata.steps.outputs([run.steps["big_array"].id])[run.steps["big_array"].id]
             .values()]
    assert sizes and sizes[0] >= 50 * 2**20
    (written,) = attempts_of(client, run.id, "big_array")
    assert written["status"] == "completed" and written["bytes_written"] == sizes[0]   # counted where it was stored
    assert written["peak_rss_bytes"] >= 50 * 2**20 and written["wall_s"] > 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_timeouts_follow_retry_on(client, tmp_path: Path, executor_name: str) -> None:
    folder = str(tmp_path / "work")
    with pytest.raises(StepFailed, match="ran longer than its timeout of 1s") as err:
        ep.timeouts.run(folder=folder, seconds=3.0, client=client, executor=executor_name)
    steps = err.value.run.steps
    assert steps["overruns"].status == "failed" and steps["overruns"].attempts == 1     # not retried
    assert steps["overruns_once"].status == "succeeded" and steps["overruns_once"].attempts == 2
    run_id = err.value.run.id
    assert [a["status"] for a in attempts_of(client, run_id, "overruns_once")] == ["timeout", "completed"]
    assert [a["status"] for a in attempts_of(client, run_id, "overruns")] == ["timeout"]
    lines = ep.journal(folder)
    assert [ln for ln in lines if ln.startswith("overruns")] == ["overruns start 1"]
    once = [ln for ln in lines if ln.startswith("once")]
    assert once.index("once start 2") > once.index("once start 1") and "once end 2" in once
    if "once end 1" in once:   # a thread cannot be stopped: then the retry waited for the first attempt
        assert once.index("once end 1") < once.index("once start 2")


def _driver(target: str, executor_name: str, folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "run", f"{PIPELINES}:{target}",
                             "--executor", executor_name, "-p", f"folder={folder}", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _running_pid(proc: subprocess.Popen[bytes], folder: Path) -> int:
    def running() -> bool:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "the driver exited")
        return any(ln.startswith("running") for ln in ep.journal(str(folder)))

    wait_until(running, "the step to be running", timeout=120)
    return int(next(ln for ln in ep.journal(str(folder)) if ln.startswith("running")).split()[1])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_cancels_the_run_and_stops_its_step(client, tmp_path: Path, executor_name: str) -> None:
    folder = tmp_path / "work"
    proc = _driver("blocking", executor_name, folder)
    try:
        pid = _running_pid(proc, folder)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "cancelled" in err.decode(), err.decode()
        wait_until(lambda: not alive(pid), "the cancelled step's process to stop", timeout=30)
        (run,) = client.list_runs()
        assert run.status == "cancelled"
        (row,) = attempts_of(client, run.id, "blocks_in")
        assert row["status"] == "cancelled" and row["executor"] == executor_name
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_resume_after_the_driver_was_killed(client, tmp_path: Path, executor_name: str) -> None:
    folder = tmp_path / "work"
    proc = _driver("killed_midway", executor_name, folder)
    try:
        pid = _running_pid(proc, folder)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # the step the dead driver was waiting for stops too (its worker or its cluster task)
        wait_until(lambda: not alive(pid), "the orphaned step to stop", timeout=60)
        (crashed,) = client.list_runs()
        assert crashed.status == "running"                       # nobody got to mark it
        run = client.resume(crashed.id, executor=executor_name)
        assert run.status == "succeeded" and run.output("counted_2") == 1 + 100 + 1
        assert (folder / "first").read_text() == "x"              # the finished step was not run again
        assert (folder / "hangs").read_text() == "xx" and (folder / "last").read_text() == "x"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.timeout(120)
def test_process_that_dies_without_returning_fails_the_step_clearly(client) -> None:
    with pytest.raises(StepFailed, match=r"ended \(exit code 3\) before it returned a result"):
        ep.hard_exit.run(code=3, client=client, executor="process")
