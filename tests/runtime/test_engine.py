"""The engine runs ready steps, in parallel where independent, and records every outcome."""

from __future__ import annotations

import pytest

from conveyor.errors import StepFailed
from tests.runtime import pipelines as p


def test_chain_passes_values_and_records_each_step(client) -> None:
    run = p.chain.run(n=5, start=10, client=client)
    assert run.status == "succeeded"
    assert run.output("inc_5") == 15
    steps = run.steps
    assert list(steps) == ["inc", "inc_2", "inc_3", "inc_4", "inc_5"]
    assert all(s.status == "succeeded" and s.attempts == 1 and not s.cache_hit for s in steps.values())
    assert p.count("inc") == 5
    assert run.parameters == {"n": 5, "start": 10}


def test_independent_steps_run_at_the_same_time(client) -> None:
    # `meet` waits on a two-party barrier: it only passes if both calls are inside together.
    run = p.parallel.run(client=client)
    assert run.output("pair") in ("ab", "ba")


def test_failure_skips_downstream_and_finishes_other_branches(client) -> None:
    with pytest.raises(StepFailed) as err:
        p.branches.run(client=client)
    run = err.value.run
    msg = str(err.value)
    assert "Step 'boom' failed" in msg and run.id in msg and f"conveyor runs resume {run.id}" in msg
    assert "ValueError: bad value 2" in msg and "raise ValueError" in msg   # the traceback, from the user's code
    steps = run.steps
    assert steps["boom"].status == "failed"
    assert "ValueError" in steps["boom"].traceback
    assert steps["inc_2"].status == "skipped" and "upstream step 'boom' failed" in steps["inc_2"].reason
    assert steps["slow_ok"].status == "succeeded" and run.output("slow_ok") == 20
    assert client.get_run(run.id).status == "failed"


def test_retries_with_backoff_until_success(client) -> None:
    run = p.retrying.run(key="a", client=client)
    assert run.steps["flaky"].attempts == 3
    assert p.count("flaky-a") == 3
    logs = client.metadata.steps.logs(run.id, "flaky")[0][2]
    assert logs.count("retrying in") == 2


def test_retry_on_limits_which_errors_are_retried(client) -> None:
    with pytest.raises(StepFailed, match="KeyError"):
        p.retry_filter.run(key="b", client=client)
    assert p.count("nr-b") == 1


def test_timeout_fails_the_step(client) -> None:
    with pytest.raises(StepFailed, match="ran longer than its timeout of 0.3s"):
        p.timing.run(seconds=3.0, client=client)


def test_fan_out_join_and_condition(client) -> None:
    run = p.fanout.run(n=4, client=client)
    assert run.output("square") == [0, 2, 8, 18]
    assert run.output("total") == 28
    assert run.output("published") == "published 28"
    assert run.output("total_2") == 56
    names = set(run.steps)
    assert {"square[0]", "square[1]", "square[2]", "square[3]"} <= names


def test_condition_false_skips_with_reason(client) -> None:
    run = p.fanout.run(n=3, threshold=0.9, client=client)
    step = run.steps["published"]
    assert step.status == "skipped"
    assert "condition not met" in step.reason and "0.8" in step.reason
    assert run.status == "succeeded"


def test_fan_out_over_empty_list(client) -> None:
    run = p.fanout.run(n=0, client=client)
    assert run.output("square") == [] and run.output("total") == 0


def test_logs_metrics_and_params_are_captured_per_step(client) -> None:
    run = p.logging_pipeline.run(client=client)
    logs = dict((name, text) for name, _a, text in client.metadata.steps.logs(run.id))
    assert "stdout line 1" in logs["chatty"] and "stderr line 1" in logs["chatty"]
    assert "a warning 1" in logs["chatty"] and "stdout line 2" not in logs["chatty"]
    assert "stdout line 2" in logs["chatty_2"]
    curve = [(m.step, m.value) for m in client.metadata.tracking.metrics(run.id) if m.key == "loss"]
    assert sorted(curve) == [(0, 1.0), (0, 1.0), (1, 0.5), (1, 0.5), (2, 1 / 3), (2, 1 / 3)]
    assert run.params["attempt"] == 1 and run.params["node"] in ("chatty", "chatty_2")


def test_dataframes_flow_between_steps(client) -> None:
    run = p.frames.run(rows=500, client=client)
    df = run.output("frame")
    assert df.shape == (500, 3)
    assert run.output("column_sum") == pytest.approx(float(df["a"].sum()))


def test_process_executor_runs_steps_in_other_processes(client) -> None:
    run = p.fanout.run(n=3, executor="process", client=client)
    assert run.output("total") == 10
    run2 = p.frames.run(rows=300, executor="process", client=client, cache=False)
    assert run2.output("column_sum") == pytest.approx(float(run2.output("frame")["a"].sum()))


def test_output_no_materializer_can_store_fails_the_step_clearly(client) -> None:
    import conveyor as cv

    @cv.step
    def makes_lambda(x: int) -> object:
        return lambda: x

    @cv.pipeline
    def bad():
        makes_lambda(1)

    with pytest.raises(StepFailed, match="No materializer can store a .*register a materializer"):
        bad.run(client=client)
