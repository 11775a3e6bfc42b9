"""What every executor must do the same way: failures, retries, retry_on, captured logs, metrics and
params. Each test runs once per executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import StepFailed
from tests.executors import pipelines as ep
from tests.runtime import pipelines as p

EXECUTORS = ["thread", "process"]


@pytest.fixture(autouse=True)
def counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "counts"
    monkeypatch.setenv("CVTEST_COUNTS", str(folder))
    return folder


@pytest.mark.parametrize("executor", EXECUTORS)
def test_failure_keeps_the_users_traceback_and_finishes_other_branches(client, executor: str) -> None:
    with pytest.raises(StepFailed) as err:
        p.branches.run(client=client, executor=executor)
    steps = err.value.run.steps
    assert steps["boom"].status == "failed" and "raise ValueError" in steps["boom"].traceback
    assert "ValueError: bad value 2" in str(err.value)
    assert steps["inc_2"].status == "skipped" and steps["slow_ok"].status == "succeeded"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retries_and_retry_on(client, executor: str) -> None:
    run = p.retrying.run(key="a", client=client, executor=executor)
    assert run.steps["flaky"].attempts == 3 and p.count("flaky-a") == 3
    assert client.metadata.steps.logs(run.id, "flaky")[0][2].count("retrying in") == 2
    with pytest.raises(StepFailed, match="KeyError"):
        p.retry_filter.run(key="b", client=client, executor=executor)
    assert p.count("nr-b") == 1


@pytest.mark.parametrize("executor", EXECUTORS)
def test_logs_metrics_and_params_are_captured(client, executor: str) -> None:
    run = p.logging_pipeline.run(client=client, executor=executor)
    logs = dict((name, text) for name, _a, text in client.metadata.steps.logs(run.id))
    assert "stdout line 1" in logs["chatty"] and "stderr line 1" in logs["chatty"]
    assert "a warning 1" in logs["chatty"] and "stdout line 2" not in logs["chatty"]
    curve = [(m.step, m.value) for m in client.metadata.tracking.metrics(run.id) if m.key == "loss"]
    assert sorted(curve) == [(0, 1.0), (0, 1.0), (1, 0.5), (1, 0.5), (2, 1 / 3), (2, 1 / 3)]
    assert run.params["attempt"] == 1


@pytest.mark.timeout(120)
def test_process_that_dies_without_returning_fails_the_step_clearly(client) -> None:
    with pytest.raises(StepFailed, match=r"ended \(exit code 3\) before it returned a result"):
        ep.hard_exit.run(code=3, client=client, executor="process")
