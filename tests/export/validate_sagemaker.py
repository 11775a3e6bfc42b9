"""The SageMaker export, checked by the API model botocore ships and by the ``sagemaker`` SDK.

- Every ProcessingStep's Arguments, with the pipeline placeholders (``Get``, ``Std:Join``) resolved
  to what the service would put there at run time (parameter defaults, a sample execution id), is
  a valid CreateProcessingJob request: botocore's ParamValidator (types, required members,
  minimums) plus the model's maximums, patterns and enums, which botocore leaves to the service.
- The definition's structure is what the SDK emits (Version, Metadata, Parameters,
  PipelineExperimentConfig, Steps) and it maps the plan: one ProcessingStep per task with its
  dependencies, its gates as (nested) ConditionSteps on JsonGet of the decider's property file,
  ``--map-index all`` for a fanned-out task, retries, deadlines, the environment.
- Round trip: in the SDK's own venv the same pipeline is built with the SDK's classes from what
  the definition says, checked by the SDK's PipelineGraph, and its ``Pipeline.definition()`` must
  equal the exported one, key for key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conveyor.export import ExportResult
from conveyor.export.plan import RESUME_PARAM, Plan
from conveyor.export.sagemaker import ROLE_PARAM, json_get
from tests.export.venvs import run_in, target_venv

SDK = ["sagemaker==2.257.7"]
SDK_SCRIPT = Path(__file__).with_name("sagemaker_sdk.py")
SAMPLE_EXECUTION_ID = "x7k2p9q4r1s8"
SAMPLE_ROLE = "arn:aws:iam::123456789012:role/conveyor-sample"
SAMPLE_EXECUTION = {"Execution.PipelineExecutionId": SAMPLE_EXECUTION_ID, "Execution.PipelineName": "sample"}


def validate(result: ExportResult) -> None:
    check_definition(result)
    check_with_sdk([result])


def check_definition(result: ExportResult) -> None:
    """The API model's and the plan's checks, without the SDK."""
    definition = json.loads(_definition_path(result).read_text())
    check_structure(definition)
    steps = flatten(definition["Steps"])
    for step, _ in steps.values():
        if step["Type"] == "Processing":
            errors = validate_processing_arguments(step["Arguments"], definition["Parameters"])
            assert not errors, f"step {step['Name']}: CreateProcessingJob refuses its arguments:\n" + "\n".join(errors)
    check_plan_mapping(result.plan, definition, steps)


def check_with_sdk(results: list[ExportResult]) -> None:
    """The SDK rebuilds each definition identically, and its graph has the plan's edges (one SDK process for all)."""
    reports = sdk_round_trip([(_definition_path(r), _pipeline_name(r)) for r in results])
    for result, report in zip(results, reports):
        assert report["differences"] == [], f"the SDK writes {result.plan.pipeline} differently:\n" + "\n".join(
            report["differences"])
        for task in result.plan:
            for up in task.upstream:
                assert task.name in report["adjacency"][up], (up, task.name, report["adjacency"])


def _definition_path(result: ExportResult) -> Path:
    return next(f for f in result.files if f.name == "pipeline.json")


def _pipeline_name(result: ExportResult) -> str:
    return result.commands[-1].split("--pipeline-name ")[1].split()[0]


def check_structure(definition: dict[str, Any]) -> None:
    """The top-level keys and their shapes, as ``Pipeline.definition()`` writes them."""
    assert list(definition) == ["Version", "Metadata", "Parameters", "PipelineExperimentConfig", "Steps"], \
        list(definition)
    assert definition["Version"] == "2020-12-01"
    assert definition["PipelineExperimentConfig"] == {"ExperimentName": {"Get": "Execution.PipelineName"},
                                                      "TrialName": {"Get": "Execution.PipelineExecutionId"}}
    for p in definition["Parameters"]:
        assert set(p) <= {"Name", "Type", "DefaultValue", "EnumValues"} and p["Type"] in (
            "String", "Integer", "Float", "Boolean"), p


def flatten(steps: list[dict[str, Any]], gates: tuple[Any, ...] = ()) -> dict[str, tuple[dict[str, Any], tuple]]:
    """Every step by name, with the conditions (LeftValues, outermost first) it sits under."""
    out: dict[str, tuple[dict[str, Any], tuple]] = {}
    for s in steps:
        assert s["Name"] not in out, f"step name {s['Name']} twice"
        out[s["Name"]] = (s, gates)
        if s["Type"] == "Condition":
            inner = (*gates, *[c["LeftValue"] for c in s["Arguments"]["Conditions"]])
            assert all(c["Type"] == "Equals" and c["RightValue"] is True for c in s["Arguments"]["Conditions"])
            assert s["Arguments"]["ElseSteps"] == []
            out.update(flatten(s["Arguments"]["IfSteps"], inner))
    return out


def check_plan_mapping(plan: Plan, definition: dict[str, Any], steps: dict[str, tuple]) -> None:
    """Each task is one ProcessingStep that says what the plan says."""
    params = {p["Name"]: p for p in definition["Parameters"]}
    for spec in plan.params:
        assert spec.name in params, spec.name
    assert params[RESUME_PARAM] == {"Name": RESUME_PARAM, "Type": "String", "DefaultValue": plan.resume_from}
    files = {s["Name"]: {f["PropertyFileName"] for f in s.get("PropertyFiles", [])} for s, _ in steps.values()}
    for task in plan:
        step, under = steps[task.name]
        assert step["Type"] == "Processing"
        assert sorted(step.get("DependsOn", [])) == sorted(task.upstream), task.name
        for dep in step.get("DependsOn", []):
            assert dep in steps, f"{task.name} depends on a missing step {dep}"
        assert list(under) == [json_get(g.decider, g.output) for g in task.gates], (task.name, under)
        for g in task.gates:
            assert f"{g.decider}_emits" in files[g.decider], f"{g.decider} declares no property file"
        args = step["Arguments"]
        argv = args["AppSpecification"]["ContainerArguments"]
        assert argv[argv.index("--node") + 1] == task.name
        assert argv[argv.index("--run-id") + 1] == {"Get": "Execution.PipelineExecutionId"}
        assert argv[argv.index("--resume-from") + 1] == {"Get": f"Parameters.{RESUME_PARAM}"}
        assert ("--map-index" in argv) == (task.fan_out is not None)
        if task.fan_out is not None:
            assert argv[argv.index("--map-index") + 1] == "all"
        assert args.get("Environment", {}) == dict(plan.env)
        assert args.get("StoppingCondition", {}).get("MaxRuntimeInSeconds") == task.deadline_s
        attempts = {r["MaxAttempts"] for r in step.get("RetryPolicies", [])}
        assert attempts == ({task.retries} if task.retries else set()), (task.name, attempts)


# --- the API model ----------------------------------------------------------------------------

def resolve(value: Any, parameters: list[dict[str, Any]]) -> Any:
    """A placeholder as the service resolves it at run time (defaults, a sample execution id and role)."""
    defaults = {p["Name"]: p.get("DefaultValue", SAMPLE_ROLE if p["Name"] == ROLE_PARAM else "") for p in parameters}
    if isinstance(value, dict) and set(value) == {"Get"}:
        where = value["Get"]
        if where.startswith("Parameters."):
            v = defaults[where.split(".", 1)[1]]
            return json.dumps(v) if isinstance(v, bool) else v
        return SAMPLE_EXECUTION[where]
    if isinstance(value, dict) and set(value) == {"Std:Join"}:
        join = value["Std:Join"]
        return join["On"].join(str(resolve(v, parameters)) for v in join["Values"])
    if isinstance(value, dict):
        return {k: resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, parameters) for v in value]
    return value


def validate_processing_arguments(arguments: dict[str, Any], parameters: list[dict[str, Any]]) -> list[str]:
    """What CreateProcessingJob's input shape refuses in these (resolved) arguments."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateProcessingJob").input_shape
    request = {"ProcessingJobName": "pipelines-sample-job", **resolve(arguments, parameters)}
    report = ParamValidator().validate(request, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    return errors + limits(shape, request, "CreateProcessingJob")


def limits(shape: Any, value: Any, where: str) -> list[str]:
    """The model's maximums, patterns and enums (botocore checks only types, required members and minimums)."""
    meta = shape.metadata
    errors: list[str] = []
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                errors += limits(member, value[name], f"{where}.{name}")
    elif shape.type_name == "list":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{where}: {len(value)} items, at most {meta['max']}")
        for i, item in enumerate(value):
            errors += limits(shape.member, item, f"{where}[{i}]")
    elif shape.type_name == "map":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{where}: {len(value)} entries, at most {meta['max']}")
        for k, v in value.items():
            errors += limits(shape.key, k, f"{where} key {k!r}") + limits(shape.value, v, f"{where}.{k}")
    elif shape.type_name == "string":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{where}: {len(value)} characters, at most {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            errors.append(f"{where}: {value!r} is not one of the model's {len(shape.enum)} values")
    elif shape.type_name in ("integer", "long") and "max" in meta and value > meta["max"]:
        errors.append(f"{where}: {value} over the maximum {meta['max']}")
    return errors


def processing_instance_types() -> list[str]:
    """The instance types CreateProcessingJob takes, from botocore's model."""
    import botocore.session

    return list(botocore.session.get_session().get_service_model("sagemaker").shape_for("ProcessingInstanceType").enum)


# --- the SDK ----------------------------------------------------------------------------------

def sdk_round_trip(definitions: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    """The SDK's rebuild of each (definition, pipeline name): its adjacency list and its differences from the export."""
    venv = target_venv("sagemaker", SDK)
    args = [a for path, name in definitions for a in (str(path), name)]
    done = run_in(venv, [str(SDK_SCRIPT), *args], timeout=300)
    assert done.returncode == 0, f"the sagemaker SDK could not rebuild {args}:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-5000:]}"
    lines = done.stdout.strip().splitlines()[-len(definitions):]
    return [json.loads(line) for line in lines]
