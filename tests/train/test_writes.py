"""The trial writer: openings written at once, closings with the next opening, everything by stop()."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from conveyor.store.metadata import StepOutcome
from conveyor.train.writes import TrialWriter


def _open(writer: TrialWriter, number: int):
    return writer.open(study="s", number=number, parent_run_id="parent", parent_step_run_id=None,
                       parameters={"x": number}, pid=1, host="here", sampler=None)


def _commits(engine) -> list[int]:
    seen: list[int] = []
    event.listen(engine, "commit", lambda conn: seen.append(1))
    return seen


def test_a_closing_waits_for_the_next_opening_and_stop_writes_the_rest(client) -> None:
    md = client.metadata
    writer = TrialWriter(md.trials.engine)
    first = _open(writer, 0).result(timeout=30)
    assert md.runs.get(first).status == "running"
    commits = _commits(md.trials.engine)
    writer.close(first, StepOutcome(status="succeeded", metrics=[("objective", 1.5, None, 0.0)]), status="succeeded")
    second = _open(writer, 1).result(timeout=30)   # the closing of the first trial goes with it
    assert len(commits) == 1
    assert md.runs.get(first).status == "succeeded"
    writer.close(second, StepOutcome(status="failed", error="boom"), status="failed", error="boom")
    writer.stop()
    assert md.runs.get(second).status == "failed"
    assert set(md.trials.find("s")) == {0, 1}


def test_a_failing_write_is_raised_by_stop_and_the_others_land(client) -> None:
    md = client.metadata
    writer = TrialWriter(md.trials.engine)
    run_id = _open(writer, 0).result(timeout=30)
    broken = writer.close("no-such-run", StepOutcome(status="succeeded"), status="succeeded")
    writer.close(run_id, StepOutcome(status="succeeded"), status="succeeded")
    with pytest.raises(Exception):
        writer.stop()
    assert broken.exception() is not None
    assert md.runs.get(run_id).status == "succeeded"
