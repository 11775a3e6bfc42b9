"""Azure Machine Learning: a plan as one pipeline job YAML (``az ml job create --file pipeline.yml``).

Every task is a command node with its own inline component: the image as a docker-image
environment, ``conveyor step exec`` as the command, the plan's environment as
``environment_variables``, its deadline as ``limits.timeout`` and its resources. The YAML is
written from the plan directly (no SDK is needed to export); ``azure.ai.ml.load_job`` is what the
tests load it with.

How the plan's constructs map (docs/portability.md, "Azure ML", says the same for users):

- parameters are the pipeline job's ``inputs`` with the exported values as defaults (override
  them with ``--set inputs.NAME=VALUE``); each component declares them with their Azure ML type
  (integer, number, string, boolean; a json parameter is a string holding JSON text) and binds
  them to ``${{parent.inputs.NAME}}``. Azure ML pastes values into the command text unescaped, so
  the command quotes them in single quotes and a value holding one is refused at export (and
  must not be submitted). A parameter whose value is None has no pipeline input (Azure ML's
  cannot be null): its ``-p`` is optional (``$[[...]]``) and the entry point takes the declared
  default. ``conveyor_resume_from`` is an optional string input whose
  ``--resume-from`` is left out of the command when it is empty (``$[[...]]``);
- Azure ML orders nodes by data bindings only, so every task writes an empty ``done`` folder and
  every task that waits for it takes that folder as an input (``mode: direct``: nothing is
  mounted or copied);
- the run id is the pipeline job's own, ``$AZUREML_ROOT_RUN_ID`` in every child's environment,
  expanded by the shell the command runs in;
- a gate is an ``if_else`` node: the decider's component declares ``cond_<n>`` as a boolean
  output with ``is_control: true``; after the step, the task publishes what the entry point
  emitted (``--emit-json``) as the run's ``azureml.pipeline.control`` property, which is how a
  command component sets a control output. Every task under a gate is in that ``if_else``'s
  ``true_block`` (the plan's gates include the inherited ones);
- a fan-out over a list known at export is a ``parallel_for`` whose items give each element its
  ``map_index`` (under a gate, one node running ``--map-index all``: an ``if_else`` controls plain
  nodes, not a ``parallel_for``). A run-time list cannot drive ``parallel_for`` here (its items are fixed when the
  job is submitted), so the mapped step is one node running ``--map-index all``: every element in
  that one job, each recorded and cached on its own. With ``map_shards=N`` that node runs on N
  instances (``distribution: pytorch``, one process each) and each instance takes its share
  through ``CONVEYOR_MAP_SHARD=RANK/N``. Such a node has no ``limits.timeout`` (how long it runs
  depends on the list); each attempt's timeout is the entry point's;
- retries: Azure ML command nodes have no retry setting (``limits`` has only ``timeout``), so the
  step's ``retries`` are the entry point's, within the one job;
- components are not deterministic (``is_deterministic: false``): Azure ML would otherwise reuse
  an earlier job's outputs without running the entry point, and the new run would have no record
  of the step. Reuse is the entry point's cache, keyed as locally;
- ``instance_type`` is ``resources.instance_type``; ``cpus`` and ``memory`` are limits on the
  container (``resources.docker_args``: ``--cpus``, ``--memory``); ``gpus`` need an instance type
  with GPUs (refused without one); the compute target is ``compute=`` (the default compute of
  the pipeline) or serverless compute (``default_compute: serverless``) when it is not given.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from conveyor.errors import ConfigurationError, ExportError, Unavailable
from conveyor.export.base import ExportOptions, build_commands
from conveyor.export.plan import RESUME_PARAM, ParamSpec, Plan, Task
from conveyor.export.yaml_text import to_yaml

SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json"
FILE = "pipeline.yml"
RUN_ID = "$AZUREML_ROOT_RUN_ID"          # the pipeline job's id, in every child job's environment
DONE = "done"                            # the output every task writes so that what waits for it can bind it
MAP_INDEX = "map_index"                  # the input a parallel_for item sets for each element
EMIT_FILE = "/tmp/conveyor-emit.json"    # where the entry point writes the values a task hands to Azure ML
CONTROL_PROPERTY = "azureml.pipeline.control"   # the run property Azure ML reads control outputs from
PUBLISHER_PACKAGES = ("mlflow", "azureml-mlflow")   # what publish_control_outputs needs in the image
SERVERLESS = "serverless"               # the default compute when no compute= is given
PREVIEW_ENV = "AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED"   # the CLI/SDK flag that lets YAML hold if_else, parallel_for
TYPES = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean", "json": "string"}
_NODE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class AzureMLTarget:
    """Azure Machine Learning: ``az ml job create --file pipeline.yml``.

    Options: ``compute`` (the compute target's name; serverless compute without it),
    ``experiment`` (the experiment name), ``map_shards`` (instances per run-time fan-out, 1 by
    default).
    """

    name: ClassVar[str] = "azureml"
    extra: ClassVar[str] = "azureml"
    option_names: ClassVar[tuple[str, ...]] = ("compute", "experiment", "map_shards")

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        """The pipeline job as YAML text, under ``pipeline.yml``."""
        plan.check()
        return {FILE: to_yaml(pipeline_job(plan, options))}

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """Build and push the image, then create the pipeline job (with the flag its control flow needs)."""
        definition = next(f for f in files if f.name == FILE)
        out_dir = definition.parent
        flag = f"{PREVIEW_ENV}=true " if _has_control_flow(plan) else ""
        notes = []
        missing = _missing_publisher_packages() if any(t.gates for t in plan) else []
        if missing:
            # the image pins this environment's distributions: without these its deciders cannot set a condition
            notes.append(f"# the image lacks {' and '.join(missing)}, which its if_else conditions need: "
                         f"pip install {' '.join(missing)} here, then export again")
        return [*notes, *build_commands(plan, out_dir), f"{flag}az ml job create --file {definition}"]


# --- the pipeline job ---------------------------------------------------------------------------

def pipeline_job(plan: Plan, options: ExportOptions) -> dict[str, Any]:
    """The pipeline job as plain data (what ``to_yaml`` writes)."""
    shards = _map_shards(options)
    names = node_names(plan)
    job: dict[str, Any] = {"$schema": SCHEMA, "type": "pipeline", "display_name": plan.pipeline}
    experiment = options.get("experiment")
    if experiment:
        job["experiment_name"] = experiment
    job["description"] = f"Conveyor pipeline {plan.pipeline} ({plan.ref}), exported for Azure ML."
    for p in plan.params:
        if p.type in ("string", "json") and "'" in p.text():
            raise ExportError(f"Parameter '{p.name}': its value {p.text()!r} holds a single quote. Azure ML pastes "
                              "input values into a task's shell command as they are, inside single quotes, so the "
                              "command would break. Export (and submit) a value without a single quote.")
    job["inputs"] = {**{p.name: _default(p) for p in plan.params if _has_value(p)}, RESUME_PARAM: plan.resume_from}
    settings: dict[str, Any] = {"continue_on_step_failure": False}
    compute = options.get("compute") or SERVERLESS
    settings["default_compute"] = (compute if compute == SERVERLESS or compute.startswith("azureml:")
                                   else f"azureml:{compute}")
    job["settings"] = settings
    jobs: dict[str, Any] = {}
    for task in plan:
        for node_name, node in task_nodes(plan, task, names, shards).items():
            if node_name in jobs:   # a step named like another's parallel_for body
                raise ExportError(f"Step '{task.name}': the Azure ML node '{node_name}' it needs is already the "
                                  "name of another step's node (a fan-out's body is '<step>_element'). Rename "
                                  "one of the steps.")
            jobs[node_name] = node
    for gate_output, (decider, gated) in gates(plan).items():
        node = f"if_{gate_output}"
        if node in jobs:
            raise ExportError(f"Step '{node}': its name is the one the Azure ML export gives the if_else node of "
                              f"condition {gate_output}. Rename that step.")
        blocks = [f"${{{{parent.jobs.{names[t]}}}}}" for t in gated]
        jobs[node] = {"type": "if_else", "condition": f"${{{{parent.jobs.{names[decider]}.outputs.{gate_output}}}}}",
                      "true_block": blocks[0] if len(blocks) == 1 else blocks}
    job["jobs"] = jobs
    return job


def node_names(plan: Plan) -> dict[str, str]:
    """Each task's node name: Azure ML wants lower-case identifiers, so names are lowered (and checked)."""
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for task in plan:
        name = re.sub(r"[^a-z0-9_]", "_", task.name.lower())
        if not _NODE_NAME.match(name):
            name = f"_{name}"
        if name in seen:
            raise ExportError(f"Steps '{seen[name]}' and '{task.name}' both become the Azure ML node '{name}' "
                              "(node names are lower case). Rename one of them.")
        seen[name] = task.name
        names[task.name] = name
    return names


def gates(plan: Plan) -> dict[str, tuple[str, list[str]]]:
    """Each gate's output -> (its decider, the tasks under it), in the plan's order."""
    found: dict[str, tuple[str, list[str]]] = {}
    for task in plan:
        for gate in task.gates:
            found.setdefault(gate.output, (gate.decider, []))[1].append(task.name)
    return found


def task_nodes(plan: Plan, task: Task, names: Mapping[str, str], shards: int) -> dict[str, Any]:
    """The node(s) of one task: a command node, or a parallel_for and its body for a static fan-out."""
    name = names[task.name]
    fan = task.fan_out
    static = uses_parallel_for(task)
    if task.gpus and not task.instance_type:
        raise ExportError(f"Step '{task.name}': gpus={task.gpus}, and Azure ML gives a job GPUs through its VM size "
                          f"only. Export with --instance-type {task.step}=<a GPU size, e.g. Standard_NC6s_v3>.")
    inputs: dict[str, Any] = {p.name: f"${{{{parent.inputs.{p.name}}}}}" for p in plan.params if _has_value(p)}
    inputs[RESUME_PARAM] = f"${{{{parent.inputs.{RESUME_PARAM}}}}}"
    declared: dict[str, Any] = {p.name: _declare(p) for p in plan.params}
    declared[RESUME_PARAM] = {"type": "string", "optional": True,
                              "description": "A run id whose finished steps this run reuses (empty: none)."}
    for up in task.upstream:
        key = f"after_{names[up]}"
        inputs[key] = {"path": f"${{{{parent.jobs.{names[up]}.outputs.{DONE}}}}}", "mode": "direct"}
        declared[key] = {"type": "mltable" if uses_parallel_for(plan.tasks[up]) else "uri_folder",
                         "description": f"Orders this step after '{up}'."}
    outputs: dict[str, Any] = {DONE: {"type": "uri_folder", "description": "Empty: what waits for this step binds it."}}
    controls = [e for e in task.emits if e.kind == "boolean"]
    for emit in controls:
        outputs[emit.name] = {"type": "boolean", "is_control": True, "description": emit.describe}
    if static:
        declared[MAP_INDEX] = {"type": "integer", "description": "The element of the fan-out this job runs."}
        map_index: str | None = f"${{{{inputs.{MAP_INDEX}}}}}"
    elif fan is not None:
        map_index = "all"
    else:
        map_index = None
    argv = plan.command(task, run_id=RUN_ID, params={p.name: f"${{{{inputs.{p.name}}}}}" for p in plan.params},
                        map_index=map_index, emit_json=EMIT_FILE if controls else None)
    unset = [p.name for p in plan.params if not _has_value(p)]
    for param in unset:   # no value: left out, so the entry point takes the declared default
        at = argv.index(f"{param}=${{{{inputs.{param}}}}}")
        del argv[at - 1:at + 1]
    command = _shell(argv) + "".join(f" $[[-p '{n}=${{{{inputs.{n}}}}}']]" for n in unset)
    command += f" $[[--resume-from '${{{{inputs.{RESUME_PARAM}}}}}']]"
    if controls:
        command += f" && {shlex.quote(plan.python)} -m conveyor.export.azureml publish {EMIT_FILE}"
    sharded = fan is not None and not static and shards > 1
    if sharded:
        command = f'CONVEYOR_MAP_SHARD="$RANK/{shards}" ' + command
    component = {
        "type": "command", "name": f"conveyor_{name}", "display_name": task.name, "version": "1",
        "description": f"Step '{task.step}' of pipeline {plan.pipeline}, run by Conveyor's entry point.",
        "is_deterministic": False, "inputs": declared, "outputs": outputs,
        "environment": {"image": plan.image}, "command": command,
    }
    node: dict[str, Any] = {"type": "command", "display_name": task.name, "inputs": inputs, "component": component}
    if plan.env:
        node["environment_variables"] = dict(plan.env)
    if task.deadline_s is not None and map_index != "all":
        # a node running every element of a run-time list has no deadline known at export; each attempt's
        # timeout is still the entry point's
        node["limits"] = {"timeout": task.deadline_s}
    resources = _resources(task, shards if sharded else 1)
    if resources:
        node["resources"] = resources
    if sharded:
        node["distribution"] = {"type": "pytorch", "process_count_per_instance": 1}
    if not static:
        return {name: node}
    body = f"{name}_element"
    items = [{MAP_INDEX: i} for i in (fan.static or ())] if fan else []
    return {body: node, name: {"type": "parallel_for", "body": f"${{{{parent.jobs.{body}}}}}",
                               "items": json.dumps(items, separators=(", ", ": "))}}


def uses_parallel_for(task: Task) -> bool:
    """Whether the task is a parallel_for: a fan-out over a list known at export, under no gate.

    An if_else controls command nodes; a parallel_for in its true_block is not something Azure ML
    runs (its SDK builds condition blocks of plain nodes only), so a gated fan-out is one node
    running every element instead.
    """
    fan = task.fan_out
    return fan is not None and fan.source is None and bool(fan.static) and not task.gates


def _missing_publisher_packages() -> list[str]:
    """What the control-output publisher needs and this environment (the image's pins) does not have."""
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for dist in PUBLISHER_PACKAGES:
        try:
            version(dist)
        except PackageNotFoundError:
            missing.append(dist)
    return missing


def _has_control_flow(plan: Plan) -> bool:
    return any(t.gates or uses_parallel_for(t) for t in plan)


def _resources(task: Task, instances: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if task.instance_type:
        res["instance_type"] = task.instance_type
    if instances > 1 or res:
        res["instance_count"] = instances
    limits = []
    if task.cpus is not None:
        limits.append(f"--cpus={task.cpus:g}")
    if task.memory_bytes is not None:
        limits.append(f"--memory={task.memory_bytes}")
    if limits:
        res["docker_args"] = " ".join(limits)
    return res


def _map_shards(options: ExportOptions) -> int:
    text = options.get("map_shards", "1") or "1"
    try:
        shards = int(text)
    except ValueError:
        shards = 0
    if shards < 1:
        raise ExportError(f"Option map_shards={text!r} is not a positive integer. Give the number of instances "
                          "each run-time fan-out runs on, e.g. --option map_shards=4.")
    return shards


def _has_value(p: ParamSpec) -> bool:
    """Whether the parameter has a value at export: Azure ML's pipeline inputs cannot hold null."""
    return p.default is not None or p.type == "json"


def _default(p: ParamSpec) -> Any:
    """A parameter's exported value as the pipeline input's literal (JSON text for a json parameter)."""
    if p.type == "json":
        return p.text()
    if p.type == "number" and p.default is not None:
        return float(p.default)
    return p.default


def _declare(p: ParamSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": TYPES[p.type]}
    if p.type == "json":
        spec["description"] = "JSON text."
    if p.choices and p.type == "string":
        spec["enum"] = list(p.choices)
    if p.default is None and p.type != "json":
        spec["optional"] = True
    return spec


def _shell(argv: Sequence[str]) -> str:
    """The argv as one shell line; the run id stays an unquoted-enough variable for the shell to expand."""
    return " ".join(f'"{a}"' if a == RUN_ID else shlex.quote(a) for a in argv)


# --- inside a task: publishing control outputs ------------------------------------------------------

def publish_control_outputs(emit_json: str | Path) -> dict[str, bool]:
    """Set this job's ``azureml.pipeline.control`` property to the booleans the entry point emitted.

    Azure ML reads a command component's control outputs from that run property: a JSON object
    of output name -> value. Run properties are written through the workspace's run-history API,
    which sits beside the MLflow API the job's tracking URI points to and takes the same token,
    so the job's own MLflow client (``mlflow`` and ``azureml-mlflow`` in the image) supplies the
    host and credentials.
    """
    values = json.loads(Path(emit_json).read_text())
    controls = {k: v for k, v in values.items() if isinstance(v, bool)}
    if not controls:
        return controls
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
        from mlflow.utils.rest_utils import http_request
    except ImportError:
        raise ConfigurationError("Publishing a condition to Azure ML needs mlflow and azureml-mlflow in the image. "
                                 "Add them to the project's requirements and build the image again.") from None
    run = (mlflow.active_run() or mlflow.start_run()).info   # in a job, MLFLOW_RUN_ID makes this the job's run
    creds = MlflowClient()._tracking_client.store.get_host_creds()
    creds.host = re.sub(r"/mlflow/v[12]\.0", "/history/v1.0", creds.host)
    body = {"runId": run.run_id, "properties": {CONTROL_PROPERTY: json.dumps(controls)}}
    response = http_request(host_creds=creds, endpoint=f"/experimentids/{run.experiment_id}/runs/{run.run_id}",
                            method="PATCH", json=body)
    if response.status_code != 200:
        raise Unavailable(f"Azure ML did not take the control outputs {controls} of run {run.run_id} "
                          f"({response.status_code} {response.text[:300]}). The if_else nodes after this step "
                          "cannot decide; submit the pipeline again once the workspace answers.")
    return controls


def main(argv: Sequence[str]) -> int:
    """``python -m conveyor.export.azureml publish FILE``: what a task runs after the entry point."""
    if len(argv) != 2 or argv[0] != "publish":
        print("usage: python -m conveyor.export.azureml publish EMIT_JSON", file=sys.stderr)
        return 2
    try:
        published = publish_control_outputs(argv[1])
    except (ConfigurationError, Unavailable) as exc:
        print(f"{exc.headline}: {exc}", file=sys.stderr)
        return 1
    print(f"control outputs: {json.dumps(published)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
