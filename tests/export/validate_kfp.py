"""The KFP target's own tools on an export: strict ``PipelineSpec`` parsing and ``load_component_from_file``.

The IR is read in the kfp venv by ``kfp_inspect.py`` (KFP's protobufs and SDK); what it parsed is then
checked against the plan: every step is a task of its own component, a mapped step iterates in a
``ParallelFor`` over its source's emitted list, a gated step sits under a ``dsl.If`` on its decider's
emitted boolean, retries and the run id are where KFP reads them, parameters are typed with defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor.export import ExportResult
from conveyor.export.kfp import IR_FILE, JOB_ID_PLACEHOLDER, RUN_ID_INPUT, task_ids
from conveyor.export.plan import RESUME_PARAM
from tests.export.venvs import run_in, target_venv

KFP_REQUIREMENTS = ["kfp==2.17.3", "kfp-kubernetes==2.17.3"]
HERE = Path(__file__).resolve().parent
IR_TYPES = {"integer": "NUMBER_INTEGER", "number": "NUMBER_DOUBLE", "string": "STRING", "boolean": "BOOLEAN",
            "json": "STRING"}


def kfp_venv() -> Path:
    return target_venv("kfp", KFP_REQUIREMENTS)


def inspect(path: Path) -> dict[str, Any]:
    """What KFP's own libraries parsed from ``path`` (fails with their output)."""
    done = run_in(kfp_venv(), [str(HERE / "kfp_inspect.py"), str(path)], timeout=300)
    assert done.returncode == 0, f"KFP refused {path}:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def validate(result: ExportResult) -> dict[str, Any]:
    """Check ``result`` with KFP's own libraries; the Kubernetes platform spec only for the kfp target."""
    platform = result.target == "kfp"
    ir = next(f for f in result.files if f.name == IR_FILE)
    got = inspect(ir)
    plan = result.plan
    ids = task_ids(plan)
    assert got["loaded_name"] == got["name"], got["loaded_name"]
    assert got["loaded_inputs"] == sorted([*(p.name for p in plan.params), RESUME_PARAM])
    for p in plan.params:
        assert got["inputs"][p.name]["type"] == IR_TYPES[p.type], (p, got["inputs"][p.name])
        default = got["inputs"][p.name]["default"]
        expected = p.text() if p.type in ("string", "json") else p.default
        assert default == expected, (p.name, default, expected)
    assert got["inputs"][RESUME_PARAM] == {"type": "STRING", "default": plan.resume_from}

    # where each DAG is used: component name -> (parent DAG, task name)
    parent = {task["component"]: (dag, name) for dag, tasks in got["dags"].items() for name, task in tasks.items()}
    where = {name: dag for dag, tasks in got["dags"].items() for name in tasks}
    for t in plan:
        ident = ids[t.name]
        assert ident in where, f"task {t.name} ({ident}) is not in the IR: {sorted(where)}"
        spec = got["dags"][where[ident]][ident]
        assert spec["component"] == f"comp-{ident}" and got["components"][spec["component"]] == f"exec-{ident}"
        assert spec["cache"] is False, f"{t.name}: KFP's own cache must be off (Conveyor decides hits)"
        assert spec["inputs"][RUN_ID_INPUT] == {"runtimeValue": {"constant": JOB_ID_PLACEHOLDER}}
        assert set(spec["inputs"]) >= {p.name for p in plan.params} | {RESUME_PARAM}
        assert got["outputs"][f"comp-{ident}"] == sorted(e.name for e in t.emits)
        if t.retries:
            assert spec["retry"]["maxRetryCount"] == t.retries, spec.get("retry")
        else:
            assert "retry" not in spec
        chain = []          # the enclosing DAG tasks, innermost first
        dag = where[ident]
        while dag != "root":
            dag, name = parent[dag]
            chain.append(got["dags"][dag][name])
        if t.fan_out is not None:
            loop = chain[0]
            assert where[ident] == f"comp-for-loop-{ident}" and "iterator" in loop, (t.name, loop)
            items = loop["iterator"]["items"]
            if t.fan_out.source is None:
                assert json.loads(items["raw"]) == list(t.fan_out.static or ()), items
            else:
                assert items["inputParameter"].endswith(f"{ids[t.fan_out.source]}--{t.fan_out.output}"), items
            assert spec["inputs"]["conveyor_map_index"] == {"componentInputParameter": loop["iterator"]["itemInput"]}
        conditions = [c["condition"] for c in chain if c["condition"]]
        for gate in t.gates:
            needle = f"{ids[gate.decider]}--{gate.output}'] == true"
            assert any(needle in c for c in conditions), f"{t.name} is not under `{gate.describe}`: {conditions}"
        assert len(conditions) == len({g.output for g in t.gates}), (t.name, conditions)
        for up in t.upstream:     # a step and what it waits for, in one DAG: the dependency is KFP's own
            if where.get(ids[up]) == where[ident]:
                assert ids[up] in spec["after"], (t.name, up, spec["after"])
    executors = got["executors"]
    for t in plan:
        ex = executors[f"exec-{ids[t.name]}"]
        assert ex["image"] == plan.image
        assert any("kfp.dsl.executor_main" in part for part in ex["command"]), "not a Lightweight Python Component"
        source = ex["command"][-1]
        assert json.dumps(plan.command(t, run_id="{conveyor:run_id}")[:8]) [1:-1] in source, source[-800:]
        assert {e["name"]: e["value"] for e in ex.get("env", [])} == dict(plan.env)
    k8s = got["platforms"].get("kubernetes", {})
    if platform:
        for t in plan:
            config = k8s.get(f"exec-{ids[t.name]}", {})
            if t.deadline_s is not None:
                assert config.get("activeDeadlineSeconds") == str(t.deadline_s), (t.name, config)
            if t.instance_type:
                assert config["nodeSelector"]["labels"]["node.kubernetes.io/instance-type"] == t.instance_type
    else:
        assert not got["platforms"], got["platforms"]
    return got
