"""Azure ML's own SDK on an exported pipeline: ``azure.ai.ml.load_job`` loads it, ``_validate()`` passes,
and it converts to the request body ``az ml job create`` would send.

``validate(result)`` runs this file as a script in a venv with the pinned azure-ai-ml (no
workspace: local validation only); the script prints what the SDK loaded (nodes, their inputs,
outputs, commands, resources; the if_else and parallel_for nodes) as JSON, and ``validate``
asserts on it against the plan. This module imports only the standard library at the top, so the
venv needs no Conveyor.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REQUIREMENTS = ["azure-ai-ml==1.35.2"]
PREVIEW_ENV = "AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED"


def load(yaml_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The pipeline as azure-ai-ml loads it, as plain data (raises AssertionError with the SDK's output)."""
    return load_many([yaml_path])[str(yaml_path)]


def load_many(paths: list[str | os.PathLike[str]], *, strict: bool = True) -> dict[str, Any]:
    """Each file as azure-ai-ml loads it, in one interpreter (its import is most of the cost).

    With ``strict`` a file the SDK refuses raises AssertionError with its output; otherwise its
    entry is ``{"error": "..."}``.
    """
    from tests.export.venvs import run_in, target_venv

    venv = target_venv("azureml", REQUIREMENTS)
    env = {**os.environ, PREVIEW_ENV: "true", "PYTHONWARNINGS": "ignore"}
    done = run_in(venv, [__file__, *map(str, paths)], env=env, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"azure-ai-ml could not load {paths}:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    if strict:
        refused = {p: v["error"] for p, v in loaded.items() if "error" in v}
        if refused:
            raise AssertionError("azure-ai-ml refused:\n" + "\n".join(f"{p}:\n{e}" for p, e in refused.items()))
    return loaded


def validate(result: Any) -> None:
    """Load and validate ``pipeline.yml`` with azure-ai-ml, then check it holds the plan's tasks, edges and gates."""
    path = next(f for f in result.files if f.name == "pipeline.yml")
    check(load(path), result.plan)


def check(loaded: dict[str, Any], plan: Any) -> None:
    """What the SDK loaded is what the plan says: nodes, dependencies, parameters, gates, fan-outs."""
    from conveyor.export.azureml import node_names, uses_parallel_for
    from conveyor.export.plan import RESUME_PARAM

    names = node_names(plan)
    jobs = loaded["jobs"]
    valued = {p.name for p in plan.params if p.default is not None or p.type == "json"}
    assert set(loaded["inputs"]) == valued | {RESUME_PARAM}, loaded["inputs"]
    for task in plan:
        name = names[task.name]
        node = jobs[name]
        static = uses_parallel_for(task)
        if static:
            assert node["type"] == "parallel_for", node
            assert node["body"] == f"{name}_element", node
            assert [i["map_index"] for i in node["items"]] == list(task.fan_out.static), node
            node = jobs[node["body"]]
        assert node["type"] == "command", (task.name, node)
        cmd = node["command"]
        assert "step exec" in cmd and f"--node {task.name}" in cmd and '--run-id "$AZUREML_ROOT_RUN_ID"' in cmd, cmd
        assert f"$[[--resume-from '${{{{inputs.{RESUME_PARAM}}}}}']]" in cmd, cmd
        for p in plan.params:
            assert f"{p.name}=${{{{inputs.{p.name}}}}}" in cmd, (p.name, cmd)
            if p.name in valued:
                assert node["inputs"][p.name] == f"${{{{parent.inputs.{p.name}}}}}", node["inputs"]
            else:
                assert node["inputs"].get(p.name) is None and node["component_inputs"][p.name]["optional"], node
        if task.fan_out is not None:
            assert ("--map-index '${{inputs.map_index}}'" if static else "--map-index all") in cmd, cmd
        waits = {k.removeprefix("after_"): v for k, v in node["inputs"].items() if k.startswith("after_")}
        assert waits == {names[u]: f"${{{{parent.jobs.{names[u]}.outputs.done}}}}" for u in task.upstream}, waits
        assert node["component_outputs"]["done"]["type"] == "uri_folder", node["component_outputs"]
        assert node["is_deterministic"] is False, node
        for emit in task.emits:
            if emit.kind == "boolean":
                out = node["component_outputs"][emit.name]
                assert out == {"type": "boolean", "is_control": True}, (emit.name, out)
        every = task.fan_out is not None and not static
        assert node["timeout"] == (None if every else task.deadline_s), (task.name, node["timeout"])
        assert node["environment_variables"] == dict(plan.env), node["environment_variables"]
        assert node["image"] == plan.image, node
    assert loaded["rest_types"] == {n: j["type"] for n, j in jobs.items()}, loaded["rest_types"]
    conditions = {n: j for n, j in jobs.items() if j["type"] == "if_else"}
    wanted: dict[str, set[str]] = {}
    for task in plan:
        for gate in task.gates:
            wanted.setdefault(f"if_{gate.output}", set()).add(names[task.name])
            cond = conditions[f"if_{gate.output}"]
            decider, _, output = cond["condition"].partition(".")
            assert decider == names[gate.decider] and output == gate.output, cond
            declared = jobs[decider]["component_outputs"][output]
            assert declared == {"type": "boolean", "is_control": True}, declared
    assert {n: set(j["true_block"]) for n, j in conditions.items()} == wanted, conditions
    assert all(not j["false_block"] for j in conditions.values()), conditions


# --- run inside the venv ---------------------------------------------------------------------------

def _binding(value: Any) -> Any:
    """A node input as text: a literal, or its ``${{...}}`` binding."""
    data = getattr(value, "_data", value)
    path = getattr(data, "path", None)
    return str(path) if path is not None else (data if isinstance(data, (int, float, bool)) or data is None
                                               else str(data))


def _node_ref(block: Any) -> str:
    name = getattr(block, "name", None)
    if name:
        return name
    text = str(block)
    return text.removeprefix("${{parent.jobs.").removesuffix("}}")


def _describe(job: Any, raw: dict[str, Any]) -> dict[str, Any]:
    from azure.ai.ml.entities import Command
    from azure.ai.ml.entities._builders.condition_node import ConditionNode
    from azure.ai.ml.entities._builders.parallel_for import ParallelFor

    out: dict[str, Any] = {"inputs": {k: _binding(v) for k, v in job.inputs.items()}, "jobs": {}}
    for name, node in job.jobs.items():
        if isinstance(node, ConditionNode):
            cond = str(node.condition).removeprefix("${{parent.jobs.").removesuffix("}}")
            out["jobs"][name] = {"type": "if_else", "condition": cond.replace(".outputs.", "."),
                                 "true_block": [_node_ref(b) for b in node.true_block or []],
                                 "false_block": [_node_ref(b) for b in node.false_block or []]}
        elif isinstance(node, ParallelFor):
            items = node.items if not isinstance(node.items, str) else json.loads(node.items)
            out["jobs"][name] = {"type": "parallel_for", "body": _node_ref(node.body), "items": items}
        elif isinstance(node, Command):
            comp = node.component
            res = node.resources
            out["jobs"][name] = {
                "type": "command", "command": comp.command, "image": comp.environment.image,
                "is_deterministic": comp.is_deterministic,
                "inputs": {k: _binding(v) for k, v in node.inputs.items()},
                "component_inputs": {k: {"type": v.type, "optional": bool(v.optional),
                                         **({"enum": list(v.enum)} if getattr(v, "enum", None) else {})}
                                     for k, v in comp.inputs.items()},
                # the SDK keeps no is_control (a primitive output is what a condition may read): the raw YAML's
                "component_outputs": {k: {"type": v.type, **({"is_control": True} if raw["jobs"][name]["component"][
                    "outputs"][k].get("is_control") else {})} for k, v in comp.outputs.items()},
                "timeout": node.limits.timeout if node.limits else None,
                "environment_variables": dict(node.environment_variables or {}),
                "instance_type": getattr(res, "instance_type", None), "instance_count": getattr(res, "instance_count",
                                                                                               None),
                "docker_args": getattr(res, "docker_args", None),
                "distribution": type(node.distribution).__name__ if node.distribution else None,
                "compute": node.compute,
            }
        else:
            out["jobs"][name] = {"type": type(node).__name__}
    out["default_compute"] = job.settings.default_compute if job.settings else None
    out["experiment_name"] = job.experiment_name
    return out


def _load_one(path: str) -> dict[str, Any]:
    import yaml
    from azure.ai.ml import load_job

    try:
        job = load_job(path)
    except Exception as exc:   # the SDK's schema errors: reported per file, with its message
        return {"error": f"{type(exc).__name__}: {exc}"}
    validation = job._validate()
    if not validation.passed:
        return {"error": str(validation)}
    try:   # the request body az ml job create would send: every node converts to the service's model
        rest = job._to_rest_object().as_dict()["properties"]["jobs"]
    except Exception as exc:
        return {"error": f"REST conversion: {type(exc).__name__}: {exc}"}
    described = _describe(job, yaml.safe_load(Path(path).read_text()))
    described["rest_types"] = {name: node.get("type") for name, node in rest.items()}
    return described


def _main(paths: list[str]) -> int:
    os.environ.setdefault(PREVIEW_ENV, "true")
    print(json.dumps({p: _load_one(p) for p in paths}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
