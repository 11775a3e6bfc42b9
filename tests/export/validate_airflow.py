"""Airflow's own check of an exported DAG: it imports into a ``DagBag`` and has the plan's graph.

Airflow runs in its own venv (its pins fight ours); ``airflow_probe.py`` prints what the DagBag
holds (tasks, operators, dependencies, mapping, short-circuits, params) and the assertions here
compare that with the plan. ``run_dag_test`` runs ``dag.test()`` on Airflow's own SQLite database.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from conveyor.export import ExportResult
from conveyor.export.airflow import XCOM_FILE, condition_task, dag_path, element_task
from conveyor.export.kubernetes import memory_quantity
from conveyor.export.plan import RESUME_PARAM, Plan
from tests.export.venvs import run_in, target_venv

# the Airflow the conformance suite and dag.test() use, and the newer line Cloud Composer 3 and MWAA also run
AIRFLOW_REQUIREMENTS = ["apache-airflow==2.10.5", "apache-airflow-providers-cncf-kubernetes==10.10.0"]
AIRFLOW_3_REQUIREMENTS = ["apache-airflow==3.1.8", "apache-airflow-providers-cncf-kubernetes==10.25.0"]
VERSIONS = {"2": AIRFLOW_REQUIREMENTS, "3": AIRFLOW_3_REQUIREMENTS}
PROBE = Path(__file__).resolve().parent / "airflow_probe.py"
KPO = "KubernetesPodOperator"
PYTHON_TASK = "_PythonDecoratedOperator"
SHORT_CIRCUIT = "_ShortCircuitDecoratedOperator"


def airflow_venv(major: str = "2") -> Path:
    """The venv with Airflow ``major`` and the Kubernetes provider (made once, under .cache/venvs)."""
    return target_venv("airflow" if major == "2" else f"airflow{major}", VERSIONS[major])


def airflow_env(home: Path, dags: Path, **extra: str) -> dict[str, str]:
    """An environment in which Airflow keeps everything (config, SQLite database, logs) under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
               AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="120", AIRFLOW__LOGGING__LOGGING_LEVEL="INFO")
    env.update(extra)
    return env


def probe(args: list[str], env: dict[str, str], timeout: float = 600, major: str = "2") -> dict[str, Any]:
    """Run the probe in the Airflow venv; its JSON, or an AssertionError with Airflow's output."""
    done = run_in(airflow_venv(major), [str(PROBE), *args], env=env, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"Airflow probe {args[0]} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                             f"{done.stderr[-6000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise AssertionError(f"Airflow probe printed no JSON:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}") \
            from None


def describe(dags: Path, major: str = "2") -> dict[str, Any]:
    """What Airflow ``major``'s DagBag made of the DAG folder ``dags`` (import errors, params, tasks)."""
    with tempfile.TemporaryDirectory(prefix="airflow-home-") as home:
        return probe(["describe", str(dags)], airflow_env(Path(home), dags), major=major)


def validate(result: ExportResult) -> None:
    """The DAG imports into a DagBag without errors and has every task, dependency, mapping and condition."""
    dag_file = next(f for f in result.files if f.as_posix().endswith(dag_path(result.plan)))
    found = describe(dag_file.parent)
    check_dag(result.plan, found)


def check_dag(plan: Plan, found: dict[str, Any]) -> dict[str, Any]:
    """Assert the DagBag's view of the DAG matches ``plan``; return the DAG's description."""
    assert not found["import_errors"], f"the DAG does not import: {found['import_errors']}"
    assert list(found["dags"]) == [plan.pipeline], f"expected one DAG {plan.pipeline!r}, found {list(found['dags'])}"
    dag = found["dags"][plan.pipeline]
    params = dag["params"]
    for spec in plan.params:
        assert params[spec.name]["default"] == spec.default, (spec.name, params[spec.name])
        if spec.type != "json":
            assert spec.type in json.dumps(params[spec.name]["schema"].get("type")), (spec.name, params[spec.name])
    assert params[RESUME_PARAM] == {"default": plan.resume_from, "schema": params[RESUME_PARAM]["schema"]}
    assert set(params) == {*(p.name for p in plan.params), RESUME_PARAM}
    tasks = dag["tasks"]
    expected = set(plan.tasks)
    for t in plan:
        assert t.name in tasks, f"task {t.name!r} missing from the DAG: {sorted(tasks)}"
        got = tasks[t.name]
        assert set(t.upstream) <= set(got["upstream"]), (t.name, t.upstream, got["upstream"])
        assert got["type"] in (KPO, PYTHON_TASK), (t.name, got["type"])
        assert got["retries"] == t.retries, (t.name, got["retries"])
        if t.retries:
            assert got["retry_delay"] == t.backoff and got["max_retry_delay"] == t.backoff_max, (t.name, got)
            assert got["retry_exponential_backoff"], t.name
        assert got["execution_timeout"] == t.deadline_s, (t.name, got["execution_timeout"], t.deadline_s)
        assert got["mapped"] == (t.fan_out is not None), (t.name, got["mapped"])
        limit = t.fan_out.max_parallel if t.fan_out is not None else None
        assert got.get("max_active_tis_per_dagrun") == limit, (t.name, got.get("max_active_tis_per_dagrun"), limit)
        if t.fan_out is not None:
            elements = element_task(t)
            expected.add(elements)
            assert got["expand"] == {"arguments": {"xcom": elements, "key": "return_value"}}, (t.name, got["expand"])
            lister = tasks[elements]
            assert lister["type"] == PYTHON_TASK and elements in got["upstream"]
            if t.fan_out.source is not None:
                assert lister["op_kwargs"]["emitted"] == {"xcom": t.fan_out.source, "key": "return_value"}, lister
                assert lister["op_kwargs"]["key"] == t.fan_out.output, lister
            else:
                assert lister["op_kwargs"]["emitted"] == {"static": list(t.fan_out.static or ())}, lister
        gate_tasks = {condition_task(g.output) for g in t.gates}
        assert gate_tasks <= set(got["upstream"]), (t.name, gate_tasks, got["upstream"])
        others = {u for u in got["upstream"] if u.endswith("__condition")} - gate_tasks
        assert not others, f"task {t.name!r} waits for conditions it is not under: {others}"
        for g in t.gates:
            gate = tasks[condition_task(g.output)]
            expected.add(condition_task(g.output))
            assert gate["type"] == SHORT_CIRCUIT and gate["ignore_downstream_trigger_rules"], gate
            assert gate["upstream"] == [g.decider], gate
            assert gate["op_kwargs"] == {"emitted": {"xcom": g.decider, "key": "return_value"}, "key": g.output}
        if got["type"] == KPO:
            _check_pod(t, got, plan)
        else:
            args = got["op_kwargs"].get("arguments") if t.fan_out is None else tasks[element_task(t)]["op_kwargs"][
                "arguments"]
            _check_argv(t, args, plan)
            assert args[0] == plan.python, args[:1]
    assert set(tasks) == expected, f"unexpected tasks: {set(tasks) ^ expected}"
    return dag


def _check_argv(t: Any, argv: list[str], plan: Plan) -> None:
    assert argv[argv.index("--run-id") + 1] == "{{ conveyor_run_id(dag.dag_id, run_id) }}", argv
    assert argv[argv.index("--node") + 1] == t.name and argv[argv.index("--shape") + 1] == plan.shape, argv
    assert argv[argv.index("--resume-from") + 1] == f"{{{{ params.{RESUME_PARAM} }}}}", argv
    for spec in plan.params:
        assert any(a.startswith(f"{spec.name}={{{{") for a in argv), (spec.name, argv)


def _check_pod(t: Any, got: dict[str, Any], plan: Plan) -> None:
    assert got["image"] == plan.image and got["cmds"] == [plan.python], got
    args = got["arguments"] if t.fan_out is None else None
    if args is not None:
        _check_argv(t, args, plan)
        if t.emits:
            assert args[-2:] == ["--emit-json", XCOM_FILE] and got["do_xcom_push"], args
        else:
            assert "--emit-json" not in args and not got["do_xcom_push"], args
    env = got["env_vars"]
    names = {e["name"]: e["value"] for e in env} if isinstance(env, list) else env
    assert names == dict(plan.env), names
    resources = got["container_resources"] or {}
    if t.cpus is not None:
        assert resources["requests"]["cpu"] in (str(int(t.cpus)), f"{int(t.cpus * 1000)}m"), resources
    if t.memory_bytes is not None:
        assert resources["requests"]["memory"] == resources["limits"]["memory"] == memory_quantity(t.memory_bytes), resources
    if t.gpus:
        assert resources["limits"]["nvidia.com/gpu"] == str(t.gpus), resources
    if t.instance_type:
        assert got["node_selector"] == {"node.kubernetes.io/instance-type": t.instance_type}, got["node_selector"]


def airflow_home(home: Path, dags: Path, **extra: str) -> dict[str, str]:
    """An Airflow home under ``home`` with a migrated SQLite database, and the environment that uses it.

    ``airflow db migrate`` runs once per venv (a template database beside it); each home gets a copy.
    """
    import fcntl
    import shutil

    venv = airflow_venv()
    template = venv / "migrated-airflow.db"
    with open(venv / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            with tempfile.TemporaryDirectory(prefix="airflow-migrate-") as tmp:
                env = airflow_env(Path(tmp), Path(tmp))
                done = subprocess.run([str(venv / "bin" / "airflow"), "db", "migrate"], env=env, capture_output=True,
                                      text=True, timeout=600)
                if done.returncode != 0:
                    raise AssertionError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                shutil.copy(Path(tmp) / "airflow.db", template.with_suffix(".tmp"))
                template.with_suffix(".tmp").rename(template)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, home / "airflow.db")
    return airflow_env(home, dags, **extra)


def run_dag_test(env: dict[str, str], dags: Path, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    """``dag.test(run_conf=conf)`` in the Airflow venv: the run id, its state and every task instance's state."""
    return probe(["test", str(dags), dag_id, json.dumps(conf)], env, timeout=900)
