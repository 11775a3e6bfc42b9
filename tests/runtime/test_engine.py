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


# --- resume with new parameters; the failure names its cause ---------------------------------------

def test_quality_gate_failure_offers_resume_with_parameters_and_resume_reruns_only_what_changed(client) -> None:
    from tests.runtime import engine_pipelines as e

    with pytest.raises(StepFailed) as err:
        e.gated.run(client=client)
    msg = str(err.value)
    run_id = err.value.run.id
    assert "Quality gate in step 'gate' failed" in msg and "score 6 is below min_score 100" in msg
    assert f"conveyor runs resume {run_id} -p KEY=VALUE" in msg and "min_score (now 100.0)" in msg
    assert "Fix the step, then resume" not in msg
    assert (p.count("load"), p.count("fit"), p.count("gate")) == (1, 1, 1)

    run = client.resume(run_id, params={"min_score": "5"}, from_text=True)
    assert run.status == "succeeded" and run.output("report") == "score=6"
    assert run.parameters == {"rows": 4, "scale": 1.0, "min_score": 5.0}
    assert client.get_run(run_id).parameters["min_score"] == 5.0
    # only the gate (whose input changed) and what follows it ran again
    assert (p.count("load"), p.count("fit"), p.count("check_scale"), p.count("gate"), p.count("report")) == \
        (1, 1, 1, 2, 1)
    events = [(kind, detail) for _at, kind, detail in client.metadata.runs.events(run_id)]
    assert ("parameters", "min_score: 100.0 -> 5.0") in events


def test_resume_with_a_changed_upstream_parameter_reruns_the_chain_below_it(client) -> None:
    from tests.runtime import engine_pipelines as e

    with pytest.raises(StepFailed):
        e.gated.run(client=client, min_score=50.0)
    run_id = client.list_runs(limit=1)[0].id
    run = client.get_run(run_id).resume(scale=10.0)   # the Python API
    assert run.status == "succeeded" and run.output("report") == "score=60"
    # load's input did not change: reused; check_scale, fit, gate and report saw new inputs
    assert (p.count("load"), p.count("check_scale"), p.count("fit"), p.count("gate"), p.count("report")) == \
        (1, 2, 2, 2, 1)


def test_a_rejected_parameter_says_resume_with_another_value(client) -> None:
    from tests.runtime import engine_pipelines as e

    with pytest.raises(StepFailed) as err:
        e.gated.run(client=client, scale=-1.0)
    msg = str(err.value)
    assert "Step 'check_scale' rejected a parameter" in msg and "scale must be positive" in msg
    assert f"conveyor runs resume {err.value.run.id} -p KEY=VALUE" in msg and "scale (now -1.0)" in msg
    assert "Fix the step" not in msg


def test_a_step_exception_still_says_fix_the_step(client) -> None:
    from tests.runtime import engine_pipelines as e

    with pytest.raises(StepFailed) as err:
        e.crashing.run(client=client)
    msg = str(err.value)
    assert "ZeroDivisionError: division by zero in crash" in msg
    assert f"Fix the step, then resume with `conveyor runs resume {err.value.run.id}`" in msg
    assert "-p KEY=VALUE" not in msg


def test_resume_refuses_an_unknown_or_ill_typed_new_parameter(client) -> None:
    from conveyor.errors import ParameterError
    from tests.runtime import engine_pipelines as e

    with pytest.raises(StepFailed) as err:
        e.gated.run(client=client)
    run_id = err.value.run.id
    with pytest.raises(ParameterError, match="has no parameter 'min_scor'.*Did you mean 'min_score'"):
        client.resume(run_id, params={"min_scor": "1"}, from_text=True)
    with pytest.raises(ParameterError, match="'min_score' expects float, got 'low'"):
        client.resume(run_id, params={"min_score": "low"}, from_text=True)


# --- after=, hooks, element names ------------------------------------------------------------------

def test_after_waits_without_data_and_hooks_report_success(client) -> None:
    from tests.runtime import engine_pipelines as e

    e.HOOK_CALLS.clear()
    run = e.notified.run(client=client, cache=False)
    assert run.status == "succeeded" and run.output("notify") == "sent to ml"
    steps = run.steps
    assert steps["notify"].started_at >= steps["train"].ended_at
    assert ("notified", "train", "succeeded", None) in e.HOOK_CALLS
    assert ("notified", None, "succeeded", None) in e.HOOK_CALLS            # the pipeline hook
    assert ("notified", "notify", "succeeded", "broken") in e.HOOK_CALLS    # raised: recorded, run still fine
    events = [(kind, detail) for _at, kind, detail in client.metadata.runs.events(run.id)]
    assert ("hook_failed", "on_success hook of step 'notify' raised RuntimeError: the pager is down") in events


def test_after_skips_when_the_upstream_fails_and_failure_hooks_run(client) -> None:
    from tests.runtime import engine_pipelines as e

    e.HOOK_CALLS.clear()
    with pytest.raises(StepFailed) as err:
        e.notified.run(client=client, fail=True)
    run = err.value.run
    steps = run.steps
    assert steps["notify"].status == "skipped" and steps["notify"].reason == "upstream step 'train' failed"
    assert p.count("notify") == 0
    assert ("notified", "train", "failed", "ValueError: training diverged") in e.HOOK_CALLS
    assert ("notified", None, "failed", "broken") in e.HOOK_CALLS       # the pipeline's failure hook raised...
    assert client.get_run(run.id).status == "failed"                    # ...and the outcome is unchanged
    kinds = [kind for _at, kind, _d in client.metadata.runs.events(run.id)]
    assert "hook_failed" in kinds


def test_after_a_skipped_step_is_skipped(client) -> None:
    from tests.runtime import engine_pipelines as e

    run = e.after_skipped.run(client=client)
    steps = run.steps
    assert steps["train"].status == "skipped" and steps["notify"].status == "skipped"
    assert steps["notify"].reason == "upstream step 'train' skipped"
    run = e.after_skipped.run(client=client, on=True)
    assert run.steps["notify"].status == "succeeded"


def test_mapped_elements_are_named_by_the_item_and_keep_their_index(client) -> None:
    from tests.runtime import engine_pipelines as e

    run = e.named.run(client=client)
    steps = run.steps
    assert steps["score[small]"].map_index == 0 and steps["score[large]"].map_index == 1
    assert run.output("score") == [0.2, 20.0]
    assert "score[0]" not in steps
    run = e.named_literal.run(client=client, values=[3, 4])
    assert {"ident[v3]", "ident[v4]"} <= set(run.steps) and run.output("ident") == [3, 4]


def test_element_names_must_be_unique_and_safe(client) -> None:
    import conveyor as cv
    from conveyor.errors import PipelineDefinitionError
    from tests.runtime import engine_pipelines as e

    @cv.pipeline
    def clash():
        return e.ident.map(x=[1, 2], name_by=lambda v: "same")

    with pytest.raises(PipelineDefinitionError, match="gave the name 'same' to elements 0 and 1; element names must be unique"):
        clash.build()

    @cv.pipeline
    def unsafe():
        return e.ident.map(x=[1], name_by=lambda v: "a b[c]")

    with pytest.raises(PipelineDefinitionError, match="no spaces or brackets"):
        unsafe.build()

    @cv.pipeline
    def late():   # names from an upstream output are checked when the step starts: it fails clearly
        return e.score.map(cfg=e.configs(), base=cv.unmapped(1), name_by=lambda c: "x")

    with pytest.raises(StepFailed, match="gave the name 'x' to elements 0 and 1"):
        late.run(client=client)


def test_git_commit_and_dirty_state_are_captured_from_the_pipeline_folder(client, tmp_path) -> None:
    import subprocess

    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "flow.py").write_text(
        "import conveyor as cv\n\n@cv.step\ndef one() -> int:\n    return 1\n\n"
        "@cv.pipeline\ndef flow():\n    one()\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "flow.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    from conveyor.runtime.loader import load_pipeline

    flow = load_pipeline(f"{repo / 'flow.py'}:flow")
    rec = client.run_pipeline(flow).record
    assert rec.git_commit == head and len(head) == 40 and rec.git_dirty is False
    (repo / "flow.py").write_text((repo / "flow.py").read_text() + "# changed\n")
    rec = client.run_pipeline(flow).record
    assert rec.git_commit == head and rec.git_dirty is True


def test_executor_registry_advertises_only_what_can_be_imported_and_names_the_extra() -> None:
    from conveyor.errors import ConfigurationError
    from conveyor.executors import ExecutorRegistry, registry

    fresh = ExecutorRegistry()
    fresh.register("thread", "conveyor.executors.thread:ThreadExecutor")
    fresh.register("cluster", "conveyor_cluster_exec:ClusterExecutor", "pip install 'conveyor[cluster]'",
                   requires=("conveyor_cluster_missing_module",))
    assert fresh.names() == ["cluster", "thread"] and fresh.available() == ["thread"]
    with pytest.raises(ConfigurationError) as err:
        fresh.create("cluster")
    assert "needs conveyor_cluster_missing_module, which is not installed" in str(err.value)
    assert "pip install 'conveyor[cluster]'" in str(err.value) and "use one of: thread" in str(err.value)
    with pytest.raises(ConfigurationError, match="Executor 'ray' is not known. Use one of: thread."):
        fresh.create("ray")
    assert {"dask", "process", "ray", "thread"} <= set(registry.available())   # dev dependencies


def test_live_view_shows_a_skipped_steps_reason() -> None:
    import io

    from rich.console import Console

    from conveyor.cli.live import LiveSteps

    out = io.StringIO()
    live = LiveSteps(Console(file=out, width=250, force_terminal=False), "demo")
    reason = "condition not met: evaluate.output['auc'] >= 0.9 (value 0.87), and a reason longer than eighty chars"
    live("skipped", "publish", {"reason": reason})
    Console(file=out, width=250).print(live._table())
    assert reason in out.getvalue()
