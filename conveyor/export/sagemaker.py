"""SageMaker Pipelines: a plan as the pipeline definition JSON that ``Pipeline.definition()`` writes.

The definition is generated as text from the plan; the ``sagemaker`` SDK is not needed to export.

- Each task is a ProcessingStep: a processing job that runs the plan's image with the entry point
  (``python -m conveyor step exec``) as ``ContainerEntrypoint`` and its flags as
  ``ContainerArguments`` (the split the SDK's own processors make), ``plan.env`` as its
  ``Environment``, the execution id (``ExecutionVariables.PIPELINE_EXECUTION_ID``) as ``--run-id``.
- A task that emits a value writes ``emits.json`` into a ProcessingOutput uploaded to S3 under the
  artifact root, declared as a PropertyFile, so a ConditionStep reads a gate with ``JsonGet``.
- Gates: a ConditionStep ``ConditionEquals(JsonGet(...), True)`` with the gated steps in its
  IfSteps; a task under several gates sits in nested ConditionSteps, outermost first, so each
  condition is evaluated only once the step that decides it has run.
- Fan-outs: SageMaker Pipelines has no run-time fan-out. A mapped task is one ProcessingStep running
  ``--map-index all`` (the entry point runs every element); with ``--option map_instances=N`` the
  job has N hosts and each runs its share, ``CONVEYOR_MAP_SHARD=K/N`` derived from the job's
  ``/opt/ml/config/resourceconfig.json`` by :func:`map_shard`.
- Retries: SageMaker retry policies cover what fails around the job (service faults, throttling,
  lost capacity, internal errors) with ``task.retries`` attempts; the step's own retries run inside
  the entry point, which fails at once when started again after its step failed for good.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions, build_commands
from conveyor.export.plan import ENTRY, RESUME_PARAM, ParamSpec, Plan, Task

VERSION = "2020-12-01"
EMIT_DIR = "/opt/ml/processing/output/conveyor"
EMIT_FILE = "emits.json"
EMIT_OUTPUT = "conveyor"
RESOURCE_CONFIG = "/opt/ml/config/resourceconfig.json"
ROLE_PARAM = "conveyor_role_arn"
RUN_ID = {"Get": "Execution.PipelineExecutionId"}
DEFAULT_VOLUME_GB = 30
MAX_RUNTIME_S = 777_600          # CreateProcessingJob's limit (9 days)
MAX_TEXT = 256                   # the longest entry point word, argument and environment value a job takes
MAX_ARGUMENTS = 100              # ContainerArguments and ContainerEntrypoint items
ROLE_PATTERN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
PARAM_TYPES = {"string": "String", "integer": "Integer", "number": "Float", "boolean": "Boolean", "json": "String"}
JOB_FAULTS = ["SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"]
STEP_FAULTS = ["Step.SERVICE_FAULT", "Step.THROTTLING"]

# The default instance for a task's cpus / memory (GiB) / gpus: the first that holds them all,
# ordered by price (on-demand, us-east-1). An explicit --instance-type always wins.
INSTANCES: tuple[tuple[str, float, float, int], ...] = (
    ("ml.m5.large", 2, 8, 0), ("ml.r5.large", 2, 16, 0), ("ml.m5.xlarge", 4, 16, 0), ("ml.r5.xlarge", 4, 32, 0),
    ("ml.m5.2xlarge", 8, 32, 0), ("ml.r5.2xlarge", 8, 64, 0), ("ml.m5.4xlarge", 16, 64, 0),
    ("ml.r5.4xlarge", 16, 128, 0), ("ml.m5.12xlarge", 48, 192, 0), ("ml.r5.12xlarge", 48, 384, 0),
    ("ml.m5.24xlarge", 96, 384, 0), ("ml.r5.24xlarge", 96, 768, 0),
    ("ml.g4dn.xlarge", 4, 16, 1), ("ml.g4dn.2xlarge", 8, 32, 1), ("ml.g4dn.4xlarge", 16, 64, 1),
    ("ml.g4dn.8xlarge", 32, 128, 1), ("ml.g4dn.16xlarge", 64, 256, 1), ("ml.g4dn.12xlarge", 48, 192, 4),
    ("ml.g5.48xlarge", 192, 768, 8),
)


class SageMakerTarget:
    """SageMaker Pipelines: ``pipeline.json`` (the definition) and ``submit.sh`` (create or update, then start)."""

    name: ClassVar[str] = "sagemaker"
    extra: ClassVar[str] = "sagemaker"
    option_names: ClassVar[tuple[str, ...]] = ("role", "pipeline_name", "map_instances", "volume_gb", "emit_root")

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        plan.check()
        definition = pipeline_definition(plan, options)
        name = pipeline_name(plan, options)
        return {"pipeline.json": json.dumps(definition, indent=2) + "\n",
                "submit.sh": submit_script(plan, name, options)}

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        definition = next(f for f in files if f.name == "pipeline.json")
        name = pipeline_name(plan, options)
        role = options.get("role") or "$ROLE_ARN"
        start = f"aws sagemaker start-pipeline-execution --pipeline-name {name}"
        if not options.get("role"):
            start += f" --pipeline-parameters Name={ROLE_PARAM},Value={role}"
        return [*build_commands(plan, definition.parent),
                f"aws sagemaker create-pipeline --pipeline-name {name} --role-arn {role} "
                f"--pipeline-definition file://{definition}", start]


# --- the definition ----------------------------------------------------------------------------

def pipeline_definition(plan: Plan, options: ExportOptions) -> dict[str, Any]:
    """The definition as ``sagemaker.workflow.pipeline.Pipeline.definition()`` writes it."""
    role = _role(plan, options)
    steps = {t.name: processing_step(plan, t, options, role) for t in plan}
    return {
        "Version": VERSION,
        "Metadata": {},
        "Parameters": parameters(plan, role_param=not options.get("role")),
        "PipelineExperimentConfig": {"ExperimentName": {"Get": "Execution.PipelineName"},
                                     "TrialName": {"Get": "Execution.PipelineExecutionId"}},
        "Steps": nest_under_conditions(plan, steps),
    }


def parameters(plan: Plan, *, role_param: bool) -> list[dict[str, Any]]:
    """Typed pipeline parameters with their defaults; json ones are Strings holding JSON text."""
    out = [_parameter(p) for p in plan.params]
    out.append({"Name": RESUME_PARAM, "Type": "String", "DefaultValue": plan.resume_from})
    if role_param:
        out.append({"Name": ROLE_PARAM, "Type": "String"})   # no default: given when an execution starts
    return out


def _parameter(p: ParamSpec) -> dict[str, Any]:
    if p.name == ROLE_PARAM:
        raise ExportError(f"Parameter '{p.name}': the SageMaker export reserves this name for the jobs' IAM role. "
                          "Rename the parameter.")
    kind = PARAM_TYPES[p.type]
    out: dict[str, Any] = {"Name": p.name, "Type": kind}
    if p.default is not None or p.type in ("string", "json"):
        out["DefaultValue"] = _default(p)
    if len(p.name) + 1 + len(p.text()) > MAX_TEXT:
        raise ExportError(f"Parameter '{p.name}': its value is passed to every job as `-p {p.name}=...`, and a "
                          f"processing job's argument holds at most {MAX_TEXT} characters. Pass a shorter value, "
                          "e.g. the URI of a file that holds it.")
    if p.choices and kind == "String":
        out["EnumValues"] = [p.text(c) for c in p.choices]
    return out


def _default(p: ParamSpec) -> Any:
    if p.type == "integer":
        return int(p.default)
    if p.type == "number":
        return float(p.default)
    if p.type == "boolean":
        return bool(p.default)
    return p.text()


def processing_step(plan: Plan, task: Task, options: ExportOptions, role: Any) -> dict[str, Any]:
    """One task as a ProcessingStep (its Arguments are a CreateProcessingJob request without the job name)."""
    count = map_instances(plan, options).get(task.name, 1)
    markers = {p.name: f"\0param:{p.name}" for p in plan.params}
    argv = plan.command(task, run_id="\0run_id", params=markers,
                        map_index="all" if task.fan_out is not None else None, resume_from="\0resume",
                        emit_json=f"{EMIT_DIR}/{EMIT_FILE}" if _gate_emits(task) else None)
    words = [_placeholder(w, markers) for w in argv]
    entry_len = 1 + len(ENTRY)
    entrypoint, arguments = words[:entry_len], words[entry_len:]
    if count > 1:
        entrypoint = _sharded(entrypoint)
    _check_words(task, entrypoint, arguments)
    args: dict[str, Any] = {
        "ProcessingResources": {"ClusterConfig": {"InstanceType": instance_type(task), "InstanceCount": count,
                                                  "VolumeSizeInGB": _volume(options)}},
        "AppSpecification": {"ImageUri": plan.image, "ContainerArguments": arguments,
                             "ContainerEntrypoint": entrypoint},
        "RoleArn": role,
    }
    if _gate_emits(task):
        uri = _join("/", _emit_root(plan, task, options), RUN_ID, task.name)
        args["ProcessingOutputConfig"] = {"Outputs": [{
            "OutputName": EMIT_OUTPUT, "AppManaged": False,
            "S3Output": {"S3Uri": uri, "LocalPath": EMIT_DIR, "S3UploadMode": "EndOfJob"}}]}
    env = _environment(plan, task)
    if env:
        args["Environment"] = env
    if task.deadline_s is not None:
        if task.deadline_s > MAX_RUNTIME_S:
            raise ExportError(f"Step '{task.name}': its deadline ({task.deadline_s} s: every attempt, backoff and "
                              f"start-up) is over a processing job's limit of {MAX_RUNTIME_S} s. Lower its timeout "
                              "or retries, or split the step.")
        args["StoppingCondition"] = {"MaxRuntimeInSeconds": task.deadline_s}
    step: dict[str, Any] = {"Name": task.name, "Type": "Processing", "Arguments": args}
    if task.upstream:
        step["DependsOn"] = list(task.upstream)
    if task.retries:
        step["RetryPolicies"] = [_retry(STEP_FAULTS, task), _retry(JOB_FAULTS, task)]
    if _gate_emits(task):
        step["PropertyFiles"] = [{"PropertyFileName": property_file(task.name), "OutputName": EMIT_OUTPUT,
                                  "FilePath": EMIT_FILE}]
    return step


def _gate_emits(task: Task) -> bool:
    # only the gates are read by the definition: a fan-out's list is read by the mapped task's entry point
    return any(e.kind == "boolean" for e in task.emits)


def property_file(step: str) -> str:
    """The PropertyFile name of a step's emitted values (``emits.json`` in its ProcessingOutput)."""
    return f"{step}_emits"


def json_get(decider: str, output: str) -> dict[str, Any]:
    """``JsonGet`` of one emitted value of ``decider``, as a ConditionStep reads it."""
    return {"Std:JsonGet": {"PropertyFile": {"Get": f"Steps.{decider}.PropertyFiles.{property_file(decider)}"},
                            "Path": output}}


def nest_under_conditions(plan: Plan, steps: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The top-level steps: ungated ones as they are, gated ones inside (nested) ConditionSteps.

    A task's gates are ordered so that every gate's decider runs under the gates before it; the
    ConditionStep of gates ``(g1, ..., gk)`` checks ``gk`` and sits in the IfSteps of the one for
    ``(g1, ..., gk-1)``, so a condition is only evaluated once its decider has run.
    """
    top: list[dict[str, Any]] = []
    conditions: dict[tuple[str, ...], dict[str, Any]] = {}
    names = set(plan.tasks)
    for task in plan:
        branch = top
        for depth in range(1, len(task.gates) + 1):
            prefix = task.gates[:depth]
            key = tuple(g.output for g in prefix)
            if key not in conditions:
                gate = prefix[-1]
                decider = plan.tasks[gate.decider]
                outside = [g.output for g in decider.gates if g not in prefix[:-1]]
                emitted = {e.name for e in decider.emits if e.kind == "boolean"}
                if outside or decider.fan_out is not None or gate.output not in emitted:
                    raise ExportError(
                        f"Step '{task.name}': its condition `{gate.describe}` is decided by '{decider.name}', whose "
                        "value a SageMaker ConditionStep cannot read at that point (a ConditionStep reads only the "
                        "properties of steps that have run, and parameters). Decide the condition in a step that "
                        "waits for everything the condition reads.")
                name = "when_" + "_".join(key)
                while name in names:
                    name += "_gate"
                names.add(name)
                conditions[key] = cond = {"Name": name, "Type": "Condition", "Arguments": {
                    "Conditions": [{"Type": "Equals", "LeftValue": json_get(decider.name, gate.output),
                                    "RightValue": True}],
                    "IfSteps": [], "ElseSteps": []}}
                branch.append(cond)
            branch = conditions[key]["Arguments"]["IfSteps"]
        branch.append(steps[task.name])
    return top


# --- pieces of a step ----------------------------------------------------------------------------

def instance_type(task: Task) -> str:
    """``task.instance_type``, else the first instance of :data:`INSTANCES` that holds its cpus, memory and gpus."""
    if task.instance_type:
        if not task.instance_type.startswith("ml."):
            raise ExportError(f"Step '{task.name}': instance type {task.instance_type!r} is not a SageMaker instance "
                              "type. Pass one like ml.m5.xlarge with --instance-type [STEP=]TYPE.")
        return task.instance_type
    cpus, gpus = task.cpus or 0, task.gpus or 0
    gib = (task.memory_bytes or 0) / 2**30
    for name, c, m, g in INSTANCES:
        if c >= cpus and m >= gib and g >= gpus and (g > 0) == (gpus > 0):
            return name
    raise ExportError(f"Step '{task.name}': no default SageMaker instance has {cpus} CPUs, {gib:g} GiB and {gpus} "
                      "GPUs. Pass one that does with --instance-type STEP=ml.TYPE.")


def map_instances(plan: Plan, options: ExportOptions) -> dict[str, int]:
    """The instance count of each mapped task: ``map_instances=N`` (all) or ``STEP=N,STEP=N``."""
    text = (options.get("map_instances") or "").strip()
    if not text:
        return {}
    mapped = [t.name for t in plan if t.fan_out is not None]
    pairs = [(None, text)] if "=" not in text else [tuple(p.split("=", 1)) for p in text.split(",")]
    counts: dict[str, int] = {}
    for step, value in pairs:
        if not value.strip().isdigit() or not 1 <= int(value) <= 100:
            raise ExportError(f"--option map_instances={text}: {value!r} is not an instance count from 1 to 100.")
        if step is None:
            counts.update(dict.fromkeys(mapped, int(value)))
        elif step.strip() not in mapped:
            raise ExportError(f"--option map_instances={text}: '{step.strip()}' is not a fanned-out step; only those "
                              f"run on several instances (each host its share). Fanned-out steps: "
                              f"{', '.join(mapped) or '(none)'}.")
        else:
            counts[step.strip()] = int(value)
    return counts


def map_shard(resource_config: str | os.PathLike[str] = RESOURCE_CONFIG) -> str:
    """``CONVEYOR_MAP_SHARD`` for this host of a processing job: ``K/N``, K from 0, from its resource config.

    SageMaker writes ``{"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}`` on every host;
    each host's position in ``hosts`` is its shard, so the hosts split the elements between them.
    """
    config = json.loads(Path(resource_config).read_text())
    hosts = list(config["hosts"])
    return f"{hosts.index(config['current_host'])}/{len(hosts)}"


def _sharded(entrypoint: list[Any]) -> list[Any]:
    # a shell sets the shard, then becomes the entry point (its words follow as "$@")
    python = shlex.quote(entrypoint[0])
    script = (f'CONVEYOR_MAP_SHARD="$({python} -m conveyor.export.sagemaker {RESOURCE_CONFIG})" && '
              'export CONVEYOR_MAP_SHARD && exec "$@"')
    return ["/bin/sh", "-c", script, "conveyor", *entrypoint]


def _placeholder(word: str, markers: Mapping[str, str]) -> Any:
    if word == "\0run_id":
        return RUN_ID
    if word == "\0resume":
        return {"Get": f"Parameters.{RESUME_PARAM}"}
    name, sep, value = word.partition("=")
    if sep and markers.get(name) == value:
        return _join("", f"{name}=", {"Get": f"Parameters.{name}"})
    return word


def _join(on: str, *values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def _check_words(task: Task, entrypoint: list[Any], arguments: list[Any]) -> None:
    if len(arguments) > MAX_ARGUMENTS:
        raise ExportError(f"Step '{task.name}': its job would take {len(arguments)} arguments, over the "
                          f"{MAX_ARGUMENTS} a processing job takes (each parameter is two). Group parameters into "
                          "one json parameter.")
    for w in [*entrypoint, *arguments]:
        if isinstance(w, str) and len(w) > MAX_TEXT:
            raise ExportError(f"Step '{task.name}': the argument {w[:40]!r}... has {len(w)} characters, over the "
                              f"{MAX_TEXT} a processing job takes. Use a shorter project folder or pipeline path.")


def _environment(plan: Plan, task: Task) -> dict[str, str]:
    env = dict(plan.env)
    if len(env) > 100:
        raise ExportError(f"Step '{task.name}': {len(env)} environment variables, over the 100 a processing job takes.")
    for key, value in env.items():
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) or len(key) > MAX_TEXT or len(value) > MAX_TEXT:
            raise ExportError(f"Step '{task.name}': environment variable {key!r} cannot be set on a processing job "
                              f"(names are letters, digits and _, names and values at most {MAX_TEXT} characters).")
    return env


def _emit_root(plan: Plan, task: Task, options: ExportOptions) -> str:
    root = options.get("emit_root")
    if root is None:
        artifacts = plan.env.get("CONVEYOR_ARTIFACT_ROOT", "")
        root = f"{artifacts.rstrip('/')}/sagemaker-emits" if artifacts.startswith("s3://") else ""
    if not root.startswith("s3://"):
        raise ExportError(f"Step '{task.name}': a SageMaker ConditionStep reads its emitted values from a processing "
                          "output, which SageMaker uploads only to S3, and the artifact root is not on S3. Export "
                          "with --artifact-root s3://BUCKET/PREFIX or --option emit_root=s3://BUCKET/PREFIX.")
    return root.rstrip("/")


def _volume(options: ExportOptions) -> int:
    text = options.get("volume_gb") or str(DEFAULT_VOLUME_GB)
    if not text.isdigit() or not 1 <= int(text) <= 16384:
        raise ExportError(f"--option volume_gb={text}: give the jobs' disk size in GB, from 1 to 16384.")
    return int(text)


def _retry(exceptions: list[str], task: Task) -> dict[str, Any]:
    return {"BackoffRate": 2.0, "IntervalSeconds": 1, "MaxAttempts": task.retries, "ExceptionType": list(exceptions)}


def _role(plan: Plan, options: ExportOptions) -> Any:
    role = options.get("role")
    if role is None:
        return {"Get": f"Parameters.{ROLE_PARAM}"}
    if not ROLE_PATTERN.fullmatch(role):
        raise ExportError(f"--option role={role}: not an IAM role ARN (arn:aws:iam::123456789012:role/NAME).")
    return role


def pipeline_name(plan: Plan, options: ExportOptions) -> str:
    """``--option pipeline_name``, else the pipeline's name with what SageMaker refuses (``_``) as ``-``."""
    name = options.get("pipeline_name") or re.sub(r"[^A-Za-z0-9]+", "-", plan.pipeline).strip("-")
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}", name):
        raise ExportError(f"Pipeline name {name!r} is not one SageMaker takes (letters, digits and -, starting with "
                          "a letter or digit). Pass --option pipeline_name=NAME.")
    return name


def submit_script(plan: Plan, name: str, options: ExportOptions) -> str:
    """A shell script that creates (or updates) the pipeline from ``pipeline.json`` and starts an execution."""
    params = "" if options.get("role") else f' --pipeline-parameters Name={ROLE_PARAM},Value="$ROLE_ARN"'
    return f"""#!/bin/sh
# Create or update the SageMaker pipeline '{name}' from pipeline.json beside this script, then start it.
# ROLE_ARN: the IAM role that SageMaker Pipelines (and its jobs) run as. Extra arguments go to
# start-pipeline-execution.
set -eu
cd "$(dirname "$0")"
: "${{ROLE_ARN:?set ROLE_ARN to the IAM role ARN the pipeline runs as}}"
if aws sagemaker describe-pipeline --pipeline-name {name} >/dev/null 2>&1; then
  aws sagemaker update-pipeline --pipeline-name {name} --role-arn "$ROLE_ARN" --pipeline-definition file://pipeline.json
else
  aws sagemaker create-pipeline --pipeline-name {name} --role-arn "$ROLE_ARN" --pipeline-definition file://pipeline.json
fi
aws sagemaker start-pipeline-execution --pipeline-name {name}{params} "$@"
"""


if __name__ == "__main__":   # `python -m conveyor.export.sagemaker [CONFIG]`: this host's shard, for the wrapper
    sys.stdout.write(map_shard(*sys.argv[1:2]) + "\n")
