"""Runs inside the Airflow venv: what Airflow itself makes of an exported DAG folder, printed as JSON.

    python airflow_probe.py describe DAG_FOLDER      the DagBag: import errors, params, tasks, mapping
    python airflow_probe.py test DAG_FOLDER DAG_ID CONF_JSON
                                                     dag.test() on Airflow's own database: each task's state

The last line of the output is the JSON document; Airflow's own log lines come before it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def describe(folder: str) -> dict[str, Any]:
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=folder, include_examples=False, safe_mode=False)
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "params": {k: {"default": p.value if p.has_value else None, "schema": p.schema}
                       for k, p in dag.params.items() for p in [dag.params.get_param(k)]},
            "tasks": {t.task_id: _task(t) for t in dag.tasks},
        }
    return {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}


def _task(t: Any) -> dict[str, Any]:
    try:   # Airflow 3: the DAG author's classes live in the task SDK
        from airflow.sdk.definitions.mappedoperator import MappedOperator
    except ImportError:
        from airflow.models.mappedoperator import MappedOperator

    mapped = isinstance(t, MappedOperator)
    kwargs = dict(t.partial_kwargs) if mapped else {}
    info: dict[str, Any] = {
        "type": t.task_type,
        "mapped": mapped,
        "upstream": sorted(t.upstream_task_ids),
        "downstream": sorted(t.downstream_task_ids),
        "trigger_rule": str(t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule),
        "retries": t.retries,
        "retry_delay": t.retry_delay.total_seconds() if t.retry_delay is not None else None,
        "retry_exponential_backoff": bool(t.retry_exponential_backoff),
        "max_retry_delay": t.max_retry_delay.total_seconds() if t.max_retry_delay is not None else None,
        "execution_timeout": t.execution_timeout.total_seconds() if t.execution_timeout is not None else None,
        "max_active_tis_per_dagrun": getattr(t, "max_active_tis_per_dagrun", None),
    }
    if mapped:
        # a decorated task keeps what it expands over apart from the operator's own expand input
        expand = getattr(t, "op_kwargs_expand_input", None) or t.expand_input
        info["expand"] = {k: _value(v) for k, v in expand.value.items()}
    if "KubernetesPodOperator" in info["type"]:
        for name in ("image", "cmds", "arguments", "env_vars", "node_selector", "do_xcom_push", "container_resources"):
            value = kwargs.get(name) if mapped else getattr(t, name, None)
            info[name] = _value(value)
    op_kwargs = kwargs.get("op_kwargs") if mapped else getattr(t, "op_kwargs", None)
    if op_kwargs is not None:
        info["op_kwargs"] = {k: _value(v) for k, v in op_kwargs.items()}
    if hasattr(t, "ignore_downstream_trigger_rules"):
        info["ignore_downstream_trigger_rules"] = t.ignore_downstream_trigger_rules
    return info


def _value(v: Any) -> Any:
    """JSON for what a task holds: an XCom reference becomes {"xcom": task_id, "key": key}."""
    try:
        from airflow.sdk.definitions.xcom_arg import XComArg
    except ImportError:
        from airflow.models.xcom_arg import XComArg

    if isinstance(v, XComArg):
        ref = next(iter(v.iter_references()))
        return {"xcom": ref[0].task_id, "key": ref[1]}
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def test(folder: str, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=folder, include_examples=False, safe_mode=False)
    if bag.import_errors:
        return {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}
    run = bag.get_dag(dag_id).test(run_conf=conf)
    tis = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state), "try_number": ti.try_number}
           for ti in run.get_task_instances()]
    return {"run_id": run.run_id, "state": str(run.state), "tasks": sorted(tis, key=lambda x: (x["task_id"],
                                                                                                 x["map_index"]))}


def main(argv: list[str]) -> int:
    if argv[0] == "describe":
        out = describe(argv[1])
    elif argv[0] == "test":
        out = test(argv[1], argv[2], json.loads(argv[3]))
    else:
        print(f"unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    print("\n" + json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
