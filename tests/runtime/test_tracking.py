"""Tracking outside pipelines (``cv.start_run``) and files logged from steps."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor as cv
from conveyor.errors import ConveyorError


def test_start_run_records_metrics_params_and_status(client) -> None:
    with cv.start_run("notebook", tags={"team": "risk"}, client=client) as run:
        cv.log_params({"lr": 0.1, "layers": [64, 32]})
        for epoch in range(3):
            cv.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    stored = client.get_run(run.id)
    assert stored.status == "succeeded" and stored.record.kind == "tracking"
    assert stored.record.tags == {"team": "risk"}
    assert stored.params == {"lr": 0.1, "layers": [64, 32]}
    assert [(m.step, m.value) for m in client.metadata.tracking.metrics(run.id)] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert stored.metrics == {"loss": pytest.approx(1 / 3)}


def test_start_run_marks_failure(client) -> None:
    with pytest.raises(ZeroDivisionError):
        with cv.start_run("broken", client=client) as run:
            cv.log_metric("x", 1)
            1 / 0  # noqa: B018
    stored = client.get_run(run.id)
    assert stored.status == "failed" and "ZeroDivisionError" in stored.error


def test_logging_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(ConveyorError, match="inside a running step or inside `with cv.start_run"):
        cv.log_metric("x", 1.0)
    with pytest.raises(ConveyorError, match="outside a running step"):
        cv.get_step_context()


def test_metric_values_must_be_numbers(client) -> None:
    with cv.start_run("bad", client=client):
        with pytest.raises(ConveyorError, match="Metric 'x' must be a number"):
            cv.log_metric("x", "high")


@cv.step
def writes_file(folder: str) -> int:
    path = Path(folder) / "report.txt"
    path.write_text("hello report")
    cv.log_artifact(path)
    return 1


@cv.pipeline
def with_file(folder: str):
    writes_file(folder)


def test_step_logged_file_is_stored_with_lineage(client, tmp_path: Path) -> None:
    run = with_file.run(folder=str(tmp_path), client=client)
    outs = {name: a for _step, name, a in client.metadata.artifacts.for_run(run.id)}
    assert "logged/report.txt" in outs
    dest = client.artifacts.export(_stored(outs["logged/report.txt"]), tmp_path / "copy.txt")
    assert Path(dest).read_text() == "hello report"


def test_tracking_run_logs_file(client, tmp_path: Path) -> None:
    f = tmp_path / "notes.md"
    f.write_text("# notes")
    with cv.start_run("files", client=client) as run:
        cv.log_artifact(f)
    outs = {name: a for _s, name, a in client.metadata.artifacts.for_run(run.id)}
    assert outs["logged/notes.md"].size and outs["logged/notes.md"].size > 0


def _stored(record):
    from conveyor.runtime.slots import stored_from_record

    return stored_from_record(record)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_failed_step_keeps_the_files_it_logged(client, tmp_path, executor: str) -> None:
    from conveyor.errors import StepFailed
    from tests.runtime import pipelines as p

    with pytest.raises(StepFailed, match="3 rows break"):
        p.failing_with_report.run(folder=str(tmp_path), client=client, executor=executor)
    run = client.list_runs(limit=1)[0]
    step = run.steps["reports_then_fails"]
    assert step.status == "failed"
    outputs = client.metadata.steps.outputs([step.id])[step.id]
    assert list(outputs) == ["logged/why.json"]
    from conveyor.runtime.slots import stored_from_record

    stored = client.artifacts.get(stored_from_record(outputs["logged/why.json"]))
    assert "price >= 0" in (stored.read_text() if hasattr(stored, "read_text") else str(stored))
