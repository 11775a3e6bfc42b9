"""The exported Argo Workflow, run here by our own small interpreter of its DAG (tests/export/argo_local.py).

No Argo is reachable, so these tests read the YAML the way Argo's controller would (depends, when,
withParam, retries, output parameters) and run each container's command as a local process. They
prove that what the export says to Argo does what a local run of the same pipeline does: the same
steps run, with the same outputs, and a skipped step skips what follows it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.export import export
from conveyor.runtime.client import Client
from conveyor.runtime.imports import import_run
from conveyor.runtime.loader import load_pipeline
from tests.export.argo_local import WorkflowRun, local_env, run_workflow

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRANCHY = "tests/export/pipelines/branchy.py:branchy"
GATED = "tests/export/pipelines/gated.py:gated"


def _workflow(tmp_path: Path, shared: Path, ref: str = BRANCHY, project: Path = REPO) -> dict:
    out = tmp_path / "argo"
    export(str(project / ref.split(":")[0]) + ":" + ref.split(":")[1], "argo", image="unused", out=out,
           artifact_root=str(shared), project_dir=project, workdir=str(project), python=sys.executable,
           build_context=False)
    return yaml.safe_load((out / "workflow.yaml").read_text())


def _ran(client: Client, run_id: str) -> dict[str, object]:
    """Each step that ran (succeeded or came from the cache) in a run, with its output."""
    run = client.get_run(run_id)
    return {name: run.output(name) for name, s in run.steps.items() if s.status in ("succeeded", "cached")}


def _local(client: Client, ref: str = BRANCHY, **params: object) -> dict[str, object]:
    run = client.run_pipeline(load_pipeline(str(REPO / ref.split(":")[0]) + ":" + ref.split(":")[1]), params)
    assert run.status == "succeeded"
    return _ran(client, run.id)


def _phases(run: WorkflowRun) -> dict[str, str]:
    return {name: node.phase for name, node in run.nodes.items()}


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    return tmp_path / "shared-root"


@pytest.mark.slow
def test_the_exported_workflow_runs_as_the_pipeline_runs_locally(client: Client, shared: Path,
                                                                 tmp_path: Path) -> None:
    flaky = tmp_path / "flaky"
    env = local_env(CONVEYOR_HOME=str(tmp_path / "pod-home"), BRANCHY_FLAKY_DIR=str(flaky))
    run = run_workflow(_workflow(tmp_path, shared), env=env, cwd=tmp_path)
    assert run.phase == "Succeeded", {n.name: n.logs[-2000:] for n in run.nodes.values() if n.phase != "Succeeded"}
    assert _phases(run) == {"make-shards": "Succeeded", "score(0:0)": "Succeeded", "score(1:1)": "Succeeded",
                            "score(2:2)": "Succeeded", "score": "Succeeded", "total": "Succeeded",
                            "publish": "Succeeded", "report": "Succeeded"}
    assert json.loads(run.nodes["make-shards"].outputs["fanout_score"]) == [0, 1, 2]
    assert run.nodes["total"].outputs == {"cond_0": "true"}
    assert all(run.nodes[f"score({i}:{i})"].attempts == 1 for i in range(3))   # the entry point retried, not Argo
    assert sorted(p.name for p in flaky.iterdir()) == ["shard-0", "shard-1", "shard-2"]   # each failed once

    import_run(client, run.uid, str(shared))
    imported = client.get_run(run.uid)
    assert imported.status == "succeeded"
    assert all(imported.steps[f"score[{i}]"].attempts == 2 for i in range(3))
    argo_ran = _ran(client, run.uid)
    assert argo_ran == _local(client, n=3)       # the same steps ran, with the same outputs, as on the laptop
    assert argo_ran["publish"] == "run:18.0"


@pytest.mark.slow
def test_a_false_gate_skips_its_task_and_an_empty_fan_out_still_joins(client: Client, shared: Path,
                                                                     tmp_path: Path) -> None:
    env = local_env(CONVEYOR_HOME=str(tmp_path / "pod-home"))
    doc = _workflow(tmp_path, shared)
    run = run_workflow(doc, parameters={"n": "0", "verbose": "false"}, env=env, cwd=tmp_path)
    assert run.phase == "Succeeded", {n.name: n.logs[-2000:] for n in run.nodes.values()}
    # no element at all: the join still runs on the empty list; the gate (0 >= 5) is false
    assert _phases(run) == {"make-shards": "Succeeded", "score": "Succeeded", "total": "Succeeded",
                            "publish": "Skipped", "report": "Succeeded"}
    import_run(client, run.uid, str(shared))
    argo_ran = _ran(client, run.uid)
    assert argo_ran == _local(client, n=0, verbose=False)
    assert argo_ran["total"] == {"total": 0, "count": 0} and "publish" not in argo_ran


@pytest.mark.slow
def test_a_resumed_workflow_reuses_every_finished_step(client: Client, shared: Path, tmp_path: Path) -> None:
    env = local_env(CONVEYOR_HOME=str(tmp_path / "pod-home"))
    doc = _workflow(tmp_path, shared)
    first = run_workflow(doc, parameters={"threshold": "100"}, env=env, cwd=tmp_path)
    assert first.phase == "Succeeded" and first.phase_of("publish") == "Skipped"
    again = run_workflow(doc, parameters={"threshold": "100", "conveyor_resume_from": first.uid}, env=env,
                         cwd=tmp_path)
    assert again.phase == "Succeeded" and _phases(again) == _phases(first)
    import_run(client, again.uid, str(shared))
    steps = client.get_run(again.uid).steps
    statuses = {n: s.status for n, s in steps.items()}
    assert statuses.pop("publish") == "skipped"          # its gate is still false
    assert set(statuses.values()) == {"cached"} and len(statuses) == 6
    assert steps["total"].reason == f"resumed from run {first.uid}"


@pytest.mark.slow
@pytest.mark.parametrize(("x", "phases"), [
    # the outer gate is false: each element of the fan-out is Skipped (Argo then marks the group
    # Succeeded), and the join is skipped by the gate it inherits, not by its depends
    (3, {"train": "Skipped", "announce": "Skipped", "deploy": "Omitted", "piece": "Succeeded",
         "piece(0:0)": "Skipped", "gather": "Skipped"}),
    (5, {"train": "Succeeded", "announce": "Skipped", "deploy": "Succeeded", "piece": "Succeeded",   # the inner one
         "piece(0:0)": "Succeeded", "piece(1:1)": "Succeeded", "piece(2:2)": "Succeeded", "gather": "Succeeded"}),
])
def test_nested_gates_skip_what_a_local_run_skips(x: int, phases: dict[str, str], client: Client, shared: Path,
                                                  tmp_path: Path) -> None:
    env = local_env(CONVEYOR_HOME=str(tmp_path / "pod-home"))
    run = run_workflow(_workflow(tmp_path, shared, GATED), parameters={"x": str(x)}, env=env, cwd=tmp_path)
    assert run.phase == "Succeeded", {n.name: n.logs[-2000:] for n in run.nodes.values()}
    assert _phases(run) == {"measure": "Succeeded", "chunks": "Succeeded", "summary": "Succeeded", **phases}
    import_run(client, run.uid, str(shared))
    assert _ran(client, run.uid) == _local(client, GATED, x=x)


@pytest.mark.slow
def test_a_failed_step_fails_the_workflow_once_and_omits_what_follows(shared: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(REPO / "tests" / "export" / "pipelines", broken / "tests" / "export" / "pipelines")
    source = broken / "tests" / "export" / "pipelines" / "branchy.py"
    source.write_text(source.read_text().replace('    return {"total": sum(scores)',
                                                 '    raise RuntimeError("boom")\n    return {"total": sum(scores)'))
    doc = _workflow(tmp_path, shared, project=broken)
    doc["spec"]["templates"][-3]["retryStrategy"] = {"limit": 2, "retryPolicy": "OnError"}   # total's template
    run = run_workflow(doc, parameters={"n": "1"}, env=local_env(CONVEYOR_HOME=str(tmp_path / "pod-home")),
                       cwd=broken)
    assert run.phase == "Failed", run.nodes["make-shards"].logs[-3000:]
    assert _phases(run) == {"make-shards": "Succeeded", "score(0:0)": "Succeeded", "score": "Succeeded",
                            "total": "Failed", "publish": "Omitted", "report": "Omitted"}, \
        run.nodes["make-shards"].logs[-3000:]
    assert "boom" in run.nodes["total"].logs
    assert run.nodes["total"].attempts == 1     # OnError: the step's own failure is not Argo's to retry
