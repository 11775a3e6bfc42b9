"""Run inside the sagemaker SDK's venv: rebuild an exported definition with the SDK and compare.

``python sagemaker_sdk.py pipeline.json NAME [...]`` reads the exported definition, builds the same
pipeline with the SDK's own classes (ParameterInteger/Float/String/Boolean, Processor.run under a
PipelineSession, ProcessingOutput, PropertyFile, retry policies, ConditionStep with ConditionEquals
on JsonGet, Join and ExecutionVariables for the placeholders), checks it with the SDK's
PipelineGraph (unknown steps, cycles), and prints a JSON report: the SDK's adjacency list and
every difference between the SDK's ``Pipeline.definition()`` and the exported one. The definition
must be exactly what the SDK writes for the same pipeline.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
warnings.simplefilter("ignore")

from sagemaker.processing import ProcessingOutput, Processor  # noqa: E402
from sagemaker.workflow.condition_step import ConditionStep  # noqa: E402
from sagemaker.workflow.conditions import ConditionEquals  # noqa: E402
from sagemaker.workflow.execution_variables import ExecutionVariables  # noqa: E402
from sagemaker.workflow.functions import Join, JsonGet  # noqa: E402
from sagemaker.workflow.parameters import (  # noqa: E402
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)
from sagemaker.workflow.pipeline import Pipeline, PipelineGraph  # noqa: E402
from sagemaker.workflow.pipeline_context import PipelineSession  # noqa: E402
from sagemaker.workflow.properties import PropertyFile  # noqa: E402
from sagemaker.workflow.retry import (  # noqa: E402
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.workflow.steps import ProcessingStep  # noqa: E402

PARAMETERS = {"Integer": ParameterInteger, "Float": ParameterFloat, "String": ParameterString,
              "Boolean": ParameterBoolean}
EXECUTION = {"Execution.PipelineExecutionId": ExecutionVariables.PIPELINE_EXECUTION_ID,
             "Execution.PipelineName": ExecutionVariables.PIPELINE_NAME}


class Rebuild:
    """The SDK objects for one exported definition."""

    def __init__(self, definition: dict) -> None:
        self.session = PipelineSession(default_bucket="conveyor-sdk-check")
        self.params = {}
        for p in definition["Parameters"]:
            kwargs = {"name": p["Name"]}
            if "DefaultValue" in p:
                kwargs["default_value"] = p["DefaultValue"]
            if "EnumValues" in p:
                kwargs["enum_values"] = p["EnumValues"]
            self.params[p["Name"]] = PARAMETERS[p["Type"]](**kwargs)
        self.property_files: dict[str, PropertyFile] = {}

    def value(self, v):
        """A placeholder of the definition as the SDK's pipeline variable."""
        if isinstance(v, dict) and set(v) == {"Get"}:
            where = v["Get"]
            if where.startswith("Parameters."):
                return self.params[where.split(".", 1)[1]]
            return EXECUTION[where]
        if isinstance(v, dict) and set(v) == {"Std:Join"}:
            return Join(on=v["Std:Join"]["On"], values=[self.value(x) for x in v["Std:Join"]["Values"]])
        if isinstance(v, dict) and set(v) == {"Std:JsonGet"}:
            get = v["Std:JsonGet"]
            _, step, _, name = get["PropertyFile"]["Get"].split(".")
            return JsonGet(step_name=step, property_file=self.property_files[name], json_path=get["Path"])
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            raise ValueError(f"unknown placeholder {v}")
        return v

    def step(self, s: dict):
        if s["Type"] == "Processing":
            return self.processing(s)
        if s["Type"] == "Condition":
            args = s["Arguments"]
            conditions = []
            for c in args["Conditions"]:
                assert c["Type"] == "Equals", c
                conditions.append(ConditionEquals(left=self.value(c["LeftValue"]), right=self.value(c["RightValue"])))
            return ConditionStep(name=s["Name"], conditions=conditions,
                                 if_steps=[self.step(x) for x in args["IfSteps"]],
                                 else_steps=[self.step(x) for x in args["ElseSteps"]])
        raise ValueError(f"step {s['Name']}: unexpected type {s['Type']}")

    def processing(self, s: dict):
        a = s["Arguments"]
        cluster = a["ProcessingResources"]["ClusterConfig"]
        app = a["AppSpecification"]
        processor = Processor(
            role=self.value(a["RoleArn"]), image_uri=app["ImageUri"], instance_count=cluster["InstanceCount"],
            instance_type=cluster["InstanceType"], entrypoint=app["ContainerEntrypoint"],
            volume_size_in_gb=cluster["VolumeSizeInGB"],
            max_runtime_in_seconds=a.get("StoppingCondition", {}).get("MaxRuntimeInSeconds"),
            env=a.get("Environment"), sagemaker_session=self.session)
        outputs = [ProcessingOutput(output_name=o["OutputName"], source=o["S3Output"]["LocalPath"],
                                    destination=self.value(o["S3Output"]["S3Uri"]),
                                    s3_upload_mode=o["S3Output"]["S3UploadMode"], app_managed=o["AppManaged"])
                   for o in a.get("ProcessingOutputConfig", {}).get("Outputs", [])]
        files = []
        for f in s.get("PropertyFiles", []):
            pf = PropertyFile(name=f["PropertyFileName"], output_name=f["OutputName"], path=f["FilePath"])
            self.property_files[pf.name] = pf
            files.append(pf)
        policies = []
        for r in s.get("RetryPolicies", []):
            common = {"backoff_rate": r["BackoffRate"], "interval_seconds": r["IntervalSeconds"],
                      "max_attempts": r["MaxAttempts"]}
            if all(t.startswith("Step.") for t in r["ExceptionType"]):
                policies.append(StepRetryPolicy(exception_types=_members(StepExceptionTypeEnum, r["ExceptionType"]),
                                                **common))
            else:
                policies.append(SageMakerJobStepRetryPolicy(
                    exception_types=_members(SageMakerJobExceptionTypeEnum, r["ExceptionType"]), **common))
        step_args = processor.run(arguments=self.value(app["ContainerArguments"]), outputs=outputs or None)
        return ProcessingStep(name=s["Name"], step_args=step_args, depends_on=s.get("DependsOn"),
                              retry_policies=policies or None, property_files=files or None)


def _members(enum, values: list[str]) -> list:
    # by value: these enums' metaclass turns a call into their default member
    by_value = {m.value: m for m in enum}
    return [by_value[v] for v in values]


def differences(ours, sdk, where: str = "$") -> list[str]:
    """Every path where the two JSON values differ."""
    if isinstance(ours, dict) and isinstance(sdk, dict):
        out = [f"{where}.{k}: only in the export" for k in ours if k not in sdk]
        out += [f"{where}.{k}: only in the SDK's ({json.dumps(sdk[k])[:200]})" for k in sdk if k not in ours]
        for k in ours:
            if k in sdk:
                out += differences(ours[k], sdk[k], f"{where}.{k}")
        return out
    if isinstance(ours, list) and isinstance(sdk, list) and len(ours) == len(sdk):
        return [d for i, (a, b) in enumerate(zip(ours, sdk)) for d in differences(a, b, f"{where}[{i}]")]
    if ours != sdk or type(ours) is not type(sdk):
        return [f"{where}: export {json.dumps(ours)[:200]} != SDK {json.dumps(sdk)[:200]}"]
    return []


def main(path: str, name: str) -> None:
    ours = json.loads(open(path).read())
    rebuild = Rebuild(ours)
    steps = [rebuild.step(s) for s in ours["Steps"]]
    pipeline = Pipeline(name=name, parameters=list(rebuild.params.values()), steps=steps,
                        sagemaker_session=rebuild.session)
    graph = PipelineGraph.from_pipeline(pipeline)   # raises on unknown steps and cycles
    sdk = json.loads(pipeline.definition())
    report = {"adjacency": {k: sorted(v) for k, v in graph.adjacency_list.items()},
              "differences": differences(ours, sdk), "version": __import__("sagemaker").__version__}
    print(json.dumps(report))


if __name__ == "__main__":
    for i in range(1, len(sys.argv), 2):   # PATH NAME [PATH NAME ...]: one report line each
        main(sys.argv[i], sys.argv[i + 1])
