"""The Airflow target: both operators load into Airflow's DagBag, the local one runs under dag.test()."""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
from pathlib import Path
from typing import Literal

import pytest

import conveyor as cv
from conveyor.errors import ExportError
from conveyor.export import ExportOptions, export, target
from conveyor.export.airflow import conveyor_run_id
from conveyor.export.plan import lower
from conveyor.runtime.loader import load_pipeline
from tests import warm_cli
from tests.export.validate_airflow import (
    KPO,
    PYTHON_TASK,
    airflow_home,
    check_dag,
    describe,
    run_dag_test,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRANCHY = "tests/export/pipelines/branchy.py:branchy"
BRANCHY_FILE = f"{REPO / 'tests' / 'export' / 'pipelines' / 'branchy.py'}:branchy"


@cv.step
def square(x: int) -> int:
    return x * x


@cv.step(gpus=1, cpus=0.5, memory="2Gi", timeout=60, retries=1, backoff=2)
def fit(squares: list[int], config: dict, mode: str, note: str | None) -> int:
    return sum(squares) + len(config) + len(mode) + len(note or "")


@cv.pipeline
def shapes(mode: Literal["fast", "full"] = "fast", config: dict = {"depth": 3}, note: str | None = None,  # noqa: B006
           k: int = 2):
    fit(square.map(x=[1, 2, 3], max_parallel=2), config, mode, note)


def _plan(ref: str = BRANCHY, **params: str):
    return lower(load_pipeline(str(REPO / ref.split(":")[0]) + ":" + ref.split(":")[1]), params, ref=ref,
                 project_dir=str(REPO), image="registry.example/c:1", python=sys.executable)


def _compile(plan, operator: str | None = None) -> str:
    options = ExportOptions({"operator": operator} if operator else {})
    [(path, text)] = target("airflow").compile(plan, options).items()
    assert path == f"dags/{plan.pipeline}.py"
    return text


def test_an_unknown_operator_is_refused_naming_the_two_it_writes() -> None:
    with pytest.raises(ExportError, match="operator='docker'.*operator=kubernetes.*operator=local"):
        _compile(_plan(), "docker")


@pytest.mark.parametrize("operator", ["kubernetes", "local"])
def test_the_dag_file_is_deterministic_python_that_never_imports_conveyor(operator: str) -> None:
    text = _compile(_plan(), operator)
    assert text == _compile(_plan(), operator)
    tree = ast.parse(text)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "conveyor" not in imported and "airflow" in imported
    assert ("KubernetesPodOperator" in text) == (operator == "kubernetes")


def test_an_instance_type_is_refused_on_the_worker_and_a_node_selector_on_pods(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="Step 'fit': instance type 'g5.xlarge' .*operator=local.*"
                                          "operator=kubernetes"):
        export(f"{Path(__file__)}:shapes", "airflow", image="i", out=tmp_path, project_dir=REPO, build_context=False,
               artifact_root="s3://b/a", instance_types={"fit": "g5.xlarge"}, options={"operator": "local"})
    assert not list(tmp_path.rglob("*.py"))
    pod = export(f"{Path(__file__)}:shapes", "airflow", image="i", out=tmp_path, project_dir=REPO,
                 build_context=False, artifact_root="s3://b/a", instance_types={"fit": "g5.xlarge"})
    assert "node_selector={'node.kubernetes.io/instance-type': 'g5.xlarge'}" in pod.files[0].read_text()


def test_a_step_named_like_a_task_the_export_adds_is_refused() -> None:
    plan = _plan()
    tasks = {("score__elements" if n == "total" else n): dataclasses.replace(
        t, name="score__elements" if n == "total" else n,
        upstream=tuple("score__elements" if u == "total" else u for u in t.upstream),
        gates=tuple(dataclasses.replace(g, decider="score__elements") if g.decider == "total" else g for g in t.gates))
        for n, t in plan.tasks.items()}
    with pytest.raises(ExportError, match="Step 'score__elements' has the name of the Airflow task .* 'score'"):
        _compile(dataclasses.replace(plan, tasks=tasks))


def test_the_next_commands_build_the_image_only_for_pods(tmp_path: Path) -> None:
    pod = export(BRANCHY_FILE, "airflow", image="registry.example/c:1", out=tmp_path / "k", project_dir=REPO,
                 artifact_root="s3://b/a", build_context=False)
    assert pod.commands[0].startswith("docker build -t registry.example/c:1")
    assert pod.commands[-1] == "airflow dags trigger branchy" and "dags/branchy.py" in pod.commands[-2]
    local = export(BRANCHY_FILE, "airflow", image="unused", out=tmp_path / "l", project_dir=REPO,
                   artifact_root="s3://b/a", build_context=False, options={"operator": "local"})
    assert not any("docker" in c for c in local.commands) and local.commands[-1] == "airflow dags trigger branchy"


def test_the_conveyor_run_id_is_airflow_s_run_id_under_its_dag() -> None:
    assert conveyor_run_id("branchy", "manual__2026-12-02T01:14:20.010998+00:00") == \
        "branchy__manual__2026-12-02T01-14-20.010998-00-00"
    assert conveyor_run_id("a", "scheduled__2026-12-02T00:00:00+00:00") != \
        conveyor_run_id("b", "scheduled__2026-12-02T00:00:00+00:00")


@pytest.mark.slow
@pytest.mark.parametrize("major", ["2", "3"], ids=["airflow2.10", "airflow3.1"])
def test_both_operators_and_every_construct_load_into_airflow_s_dagbag(major: str, tmp_path: Path) -> None:
    """One DagBag, three DAGs: branchy with each operator (renamed), and one with the remaining constructs."""
    dags = tmp_path / "dags"
    plans = {}
    for operator in ("kubernetes", "local"):
        plan = dataclasses.replace(_plan(), pipeline=f"branchy_{operator}")
        plans[plan.pipeline] = plan
        (dags / f"{plan.pipeline}.py").parent.mkdir(parents=True, exist_ok=True)
        (dags / f"{plan.pipeline}.py").write_text(_compile(plan, operator))
    shaped = export(f"{Path(__file__)}:shapes", "airflow", image="registry.example/c:1", out=tmp_path / "shapes",
                    project_dir=REPO, artifact_root="s3://b/a", build_context=False, resume="run-7",
                    instance_types={"fit": "g5.xlarge"})
    plans["shapes"] = shaped.plan
    (dags / "shapes.py").write_text(shaped.files[0].read_text())

    found = describe(dags, major)
    assert not found["import_errors"], found["import_errors"]
    views = {}
    for dag_id, plan in plans.items():
        views[dag_id] = check_dag(plan, {"import_errors": {}, "dags": {dag_id: found["dags"][dag_id]}})

    pod, local = views["branchy_kubernetes"]["tasks"], views["branchy_local"]["tasks"]
    assert pod["score"]["type"] == KPO and local["score"]["type"] == PYTHON_TASK
    assert pod["score"]["container_resources"]["requests"] == {"cpu": "1", "memory": "256Mi"}
    assert pod["score"]["retries"] == local["score"]["retries"] == 2
    # the join of a fan-out runs after an empty one; a false condition still skips it (its short-circuit task)
    assert pod["total"]["trigger_rule"] == "none_failed" and pod["publish"]["trigger_rule"] == "all_success"
    assert pod["publish"]["upstream"] == ["cond_0__condition", "total"] and pod["report"]["upstream"] == ["total"]
    assert local["make_shards"]["op_kwargs"]["emits"] is True and local["report"]["op_kwargs"]["emits"] is False

    s = views["shapes"]
    assert s["params"]["mode"] == {"default": "fast", "schema": {"type": "string", "enum": ["fast", "full"]}}
    assert s["params"]["config"]["default"] == {"depth": 3} and "type" not in s["params"]["config"]["schema"]
    assert s["params"]["note"] == {"default": None, "schema": {}}      # Optional[str] is a json parameter: any value
    assert s["params"]["k"]["schema"]["type"] == "integer"
    assert s["params"]["conveyor_resume_from"]["default"] == "run-7"
    fit_task = s["tasks"]["fit"]
    assert fit_task["container_resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}
    assert fit_task["container_resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": "1"}
    assert fit_task["node_selector"] == {"node.kubernetes.io/instance-type": "g5.xlarge"}
    assert fit_task["retries"] == 1 and fit_task["retry_delay"] == 2
    assert fit_task["execution_timeout"] == 60 * 2 + 2 + 600      # two attempts, one backoff, start-up
    assert s["tasks"]["square__elements"]["op_kwargs"]["emitted"] == {"static": [0, 1, 2]}
    assert s["tasks"]["square"]["mapped"] and "square" in fit_task["upstream"]
    assert s["tasks"]["square"]["max_active_tis_per_dagrun"] == 2          # .map(max_parallel=2)
    assert pod["score"]["max_active_tis_per_dagrun"] is None               # no limit: none set


def _import(run_id: str, root: Path) -> str:
    done = warm_cli.run(["runs", "import", run_id, "--from", str(root)], env=dict(os.environ), cwd=os.getcwd(),
                        timeout=300)     # a real process, forked warm (tests/warm_cli.py)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _states(ran: dict) -> dict[str, str]:
    return {t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else ""): t["state"] for t in ran["tasks"]}


@pytest.mark.slow
def test_branchy_runs_end_to_end_under_dag_test_and_lands_in_conveyor_s_store(client, tmp_path: Path) -> None:
    """dag.test() on Airflow's SQLite database, tasks on our interpreter; each run imported into Conveyor's store."""
    shared = tmp_path / "shared-root"
    result = export(BRANCHY_FILE, "airflow", image="unused", out=tmp_path / "out", project_dir=REPO, workdir=str(REPO),
                    python=sys.executable, artifact_root=str(shared), build_context=False,
                    options={"operator": "local"})
    dags = result.files[0].parent
    env = airflow_home(tmp_path / "airflow", dags, BRANCHY_FLAKY_DIR=str(tmp_path / "flaky"),
                       CONVEYOR_HOME=str(tmp_path / "task-home"))

    # 1. the exported defaults (threshold 5.0): every shard fails once and its retry heals it; publish runs
    first = run_dag_test(env, dags, "branchy", {})
    assert first["state"] == "success", first
    assert _states(first) == {"make_shards": "success", "score__elements": "success", "score[0]": "success",
                              "score[1]": "success", "score[2]": "success", "total": "success",
                              "cond_0__condition": "success", "publish": "success", "report": "success"}
    run_id = conveyor_run_id("branchy", first["run_id"])
    assert "1 step runs" not in _import(run_id, shared)
    run = client.get_run(run_id)
    assert run.status == "succeeded" and run.parameters["threshold"] == 5.0
    steps = run.steps
    assert {n: s.status for n, s in steps.items()} == {
        "make_shards": "succeeded", "score[0]": "succeeded", "score[1]": "succeeded", "score[2]": "succeeded",
        "total": "succeeded", "publish": "succeeded", "report": "succeeded"}
    assert all(steps[f"score[{i}]"].attempts == 2 for i in range(3))     # the step's own retries healed each shard
    assert run.output("total") == {"total": 18.0, "count": 3} and run.output("publish") == "run:18.0"
    edges = client.metadata.artifacts.step_edges(steps["total"].id)
    shard_outputs = client.metadata.steps.outputs([steps[f"score[{i}]"].id for i in range(3)])
    assert sorted(e.artifact_id for e in edges if e.direction == "input") == sorted(
        o["output"].id for o in shard_outputs.values())                 # lineage from every element

    # 2. a threshold above the total (the DAG param, at trigger time): publish is skipped, the rest is cached
    second = run_dag_test(env, dags, "branchy", {"threshold": 100})
    assert second["state"] == "success", second
    states = _states(second)
    assert states["publish"] == "skipped" and states["report"] == "success" and states["cond_0__condition"] == "success"
    run_id = conveyor_run_id("branchy", second["run_id"])
    _import(run_id, shared)
    steps = client.get_run(run_id).steps
    assert steps["publish"].status == "skipped" and "condition not met" in (steps["publish"].reason or "")
    assert {n: s.status for n, s in steps.items() if n != "publish"} == {
        n: "cached" for n in ("make_shards", "score[0]", "score[1]", "score[2]", "total", "report")}

    # 3. an empty fan-out: Airflow skips the mapped task, the join still runs on no elements, as a local run does
    third = run_dag_test(env, dags, "branchy", {"n": 0})
    assert third["state"] == "success", third
    states = _states(third)
    assert states["score"] == "skipped" and states["total"] == "success" and states["publish"] == "skipped"
    run_id = conveyor_run_id("branchy", third["run_id"])
    _import(run_id, shared)
    run = client.get_run(run_id)
    assert run.output("total") == {"total": 0, "count": 0} and run.steps["publish"].status == "skipped"
    assert run.steps["report"].status == "succeeded"


@pytest.mark.slow
def test_the_quickstart_runs_end_to_end_under_dag_test(client, tmp_path: Path) -> None:
    """The quickstart (static fan-out of three candidates, a gate on the AUC) run by Airflow and imported."""
    shared = tmp_path / "shared-root"
    result = export("conveyor.examples.quickstart:training", "airflow", image="unused", out=tmp_path / "out",
                    project_dir=REPO, workdir=str(REPO), python=sys.executable, artifact_root=str(shared),
                    allow_pickle=True, build_context=False, options={"operator": "local"})
    dags = result.files[0].parent
    env = airflow_home(tmp_path / "airflow", dags, CONVEYOR_HOME=str(tmp_path / "task-home"))
    ran = run_dag_test(env, dags, "training", {"rows": 1000})
    assert ran["state"] == "success", ran
    run_id = conveyor_run_id("training", ran["run_id"])
    _import(run_id, shared)
    run = client.get_run(run_id)
    assert {n: s.status for n, s in run.steps.items()} == {
        n: "succeeded" for n in ("load", "validate", "split", "features", "train[0]", "train[1]", "train[2]",
                                 "evaluate", "pick_best", "publish")}
    assert run.output("evaluate")["auc"] >= 0.7 and run.parameters["rows"] == 1000
    edges = client.metadata.artifacts.step_edges(run.steps["evaluate"].id)
    trained = client.metadata.steps.outputs([run.steps[f"train[{i}]"].id for i in range(3)])
    assert {o["output"].id for o in trained.values()} <= {e.artifact_id for e in edges if e.direction == "input"}
