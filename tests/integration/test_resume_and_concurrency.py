"""Crash-and-resume for real (SIGKILL mid-step) and two processes sharing one SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.errors import StepFailed

from tests.conftest import REPO
from tests.runtime import pipelines as p

RUNNER = """
import sys
from conveyor.runtime.client import Client
from tests.runtime import pipelines as p
params = dict(a.split('=', 1) for a in sys.argv[2:])
run = Client().run_pipeline(getattr(p, sys.argv[1]), params, from_text=True)
print('RUN', run.id, run.status)
"""


def _spawn(pipeline: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", RUNNER, pipeline, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "counts"
    monkeypatch.setenv("CVTEST_COUNTS", str(folder))
    return folder


@pytest.mark.slow
def test_resume_after_sigkill_skips_completed_steps(client, tmp_path: Path, counts: Path) -> None:
    marker = tmp_path / "marker"
    proc = _spawn("crashing", f"marker={marker}")
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (crashed,) = client.list_runs()
    assert crashed.status == "running"                      # nobody got to mark it
    assert p.count("inc") == 1 and p.count("wait_for_kill") == 1

    run = client.resume(crashed.id)
    assert run.id == crashed.id and run.status == "succeeded"
    assert run.output("inc_2") == 103
    assert p.count("inc") == 2                              # inc ran once before and once after: inc_2 only
    assert p.count("wait_for_kill") == 2
    kinds = [k for _at, k, _d in client.metadata.runs.events(run.id)]
    assert kinds == ["started", "interrupted", "resumed", "succeeded"]
    statuses = sorted(s.status for s in client.metadata.steps.for_run(run.id))
    assert statuses.count("interrupted") == 1             # the killed attempt stays in the history


def test_resume_a_failed_run_after_fixing_the_cause(client, counts: Path, tmp_path: Path) -> None:
    switch = tmp_path / "fixed"
    with pytest.raises(StepFailed):
        p.fixable_pipeline.run(switch=str(switch), client=client)
    failed = client.list_runs()[0]
    assert failed.status == "failed" and p.count("fixable-upstream") == 1
    switch.write_text("yes")
    run = client.resume(failed.id)
    assert run.status == "succeeded" and run.output("fixable") == "fixed"
    assert p.count("fixable-upstream") == 1


@pytest.mark.slow
def test_two_processes_share_one_sqlite_store(client, counts: Path) -> None:
    client.metadata  # create and migrate first, so both children race only on runs
    procs = [_spawn("chain", "n=30", f"start={i * 1000}") for i in range(2)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert "succeeded" in out
    runs = client.list_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {"succeeded"}
    assert sorted(r.output("inc_30") for r in runs) == [30, 1030]


@pytest.mark.slow
def test_two_processes_on_a_fresh_store_both_migrate_safely(settings, counts: Path) -> None:
    procs = [_spawn("chain", "n=3", f"start={i}") for i in range(2)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
