"""The SageMaker Pipelines export: parameters, resume, resources, conditions, fan-outs, refusals, submission.

Definitions are checked by botocore's API model and the sagemaker SDK (tests/export/validate_sagemaker.py);
submission runs the exported script with the real AWS CLI against moto's SageMaker server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

import conveyor as cv
from conveyor.errors import ExportError
from conveyor.export import ExportOptions, export, lower
from conveyor.export.sagemaker import (
    EMIT_DIR,
    INSTANCES,
    RESOURCE_CONFIG,
    SageMakerTarget,
    map_shard,
)
from tests.export.validate_sagemaker import (
    check_definition,
    check_with_sdk,
    flatten,
    processing_instance_types,
    validate_processing_arguments,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRANCHY = f"{HERE / 'pipelines' / 'branchy.py'}:branchy"
ROOT = "s3://conveyor-demo/artifacts"


@cv.step
def pick(mode: str, config: dict) -> dict:
    return {"mode": mode, **config}


@cv.step
def check(x: dict) -> bool:
    return bool(x)


@cv.step(cpus=8, memory="48Gi")
def big(x: dict) -> int:
    return 1


@cv.step(gpus=1, memory="20Gi")
def gpu(x: int) -> int:
    return x


@cv.step(timeout=800_000)
def forever(x: dict) -> int:
    return 0


@cv.pipeline
def typed(mode: Literal["fast", "slow"] = "fast", config: dict | None = None, n: int = 2):
    pick(mode, config or {"a": 1})


@cv.pipeline
def nested():
    first = pick("m", {})
    with cv.when(check(first)):
        second = big(first)
        with cv.when(second == 1):
            gpu(second)


@cv.pipeline
def too_long():
    forever(pick("m", {}))


@cv.step
def count(k: int) -> list[int]:
    return list(range(k))


@cv.step
def square(i: int) -> int:
    return i * i


@cv.step
def add(xs: list[int]) -> int:
    return sum(xs)


@cv.pipeline
def fanned(k: int = 3):
    total = add(square.map(i=count(k)))
    with cv.when(total > 4):
        check({"t": total})
    add(square.map(i=[5, 6]))     # a list known when the pipeline is built


def _export(pipeline: Any, tmp_path: Path, **kw: Any):
    kw.setdefault("artifact_root", ROOT)
    return export(pipeline, "sagemaker", image="registry.example/demo:1", out=tmp_path, project_dir=REPO,
                  build_context=False, **kw)


def _definition(result) -> dict[str, Any]:
    return json.loads(next(f for f in result.files if f.name == "pipeline.json").read_text())


def _steps(result) -> dict[str, dict[str, Any]]:
    return {name: step for name, (step, _) in flatten(_definition(result)["Steps"]).items()}


def test_parameters_are_typed_with_their_defaults(tmp_path: Path) -> None:
    result = _export(BRANCHY, tmp_path, params={"n": 4})
    assert _definition(result)["Parameters"] == [
        {"Name": "n", "Type": "Integer", "DefaultValue": 4},
        {"Name": "scale", "Type": "Float", "DefaultValue": 1.5},
        {"Name": "threshold", "Type": "Float", "DefaultValue": 5.0},
        {"Name": "label", "Type": "String", "DefaultValue": "run"},
        {"Name": "verbose", "Type": "Boolean", "DefaultValue": True},
        {"Name": "conveyor_resume_from", "Type": "String", "DefaultValue": ""},
        {"Name": "conveyor_role_arn", "Type": "String"},
    ]
    argv = _steps(result)["total"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert {"Std:Join": {"On": "", "Values": ["n=", {"Get": "Parameters.n"}]}} in argv


ROLE_OPTION = {"role": "arn:aws:iam::123456789012:role/pipelines"}
FANNED_OPTIONS = {"map_instances": "square=3"}


def test_literal_and_json_parameters_become_strings(tmp_path: Path) -> None:
    result = _export(typed, tmp_path, options=ROLE_OPTION)
    params = {p["Name"]: p for p in _definition(result)["Parameters"]}
    assert params["mode"] == {"Name": "mode", "Type": "String", "DefaultValue": "fast", "EnumValues": ["fast", "slow"]}
    assert params["config"] == {"Name": "config", "Type": "String", "DefaultValue": "null"}
    assert "conveyor_role_arn" not in params     # the role is given at export
    step = _steps(result)["pick"]
    assert step["Arguments"]["RoleArn"] == "arn:aws:iam::123456789012:role/pipelines"
    check_definition(result)


def test_the_resume_parameter_reaches_every_step(tmp_path: Path) -> None:
    result = _export(BRANCHY, tmp_path, resume="run-0a1b2c")
    params = {p["Name"]: p for p in _definition(result)["Parameters"]}
    assert params["conveyor_resume_from"]["DefaultValue"] == "run-0a1b2c"
    steps = _steps(result)
    for name in ("make_shards", "score", "total", "publish", "report"):
        argv = steps[name]["Arguments"]["AppSpecification"]["ContainerArguments"]
        assert argv[argv.index("--resume-from") + 1] == {"Get": "Parameters.conveyor_resume_from"}, name
        assert argv[argv.index("--run-id") + 1] == {"Get": "Execution.PipelineExecutionId"}, name


def test_the_condition_reads_the_deciders_property_file_with_json_get(tmp_path: Path) -> None:
    result = _export(BRANCHY, tmp_path)
    top = {s["Name"]: s for s in _definition(result)["Steps"]}
    assert "publish" not in top and "report" in top
    cond = top["when_cond_0"]["Arguments"]
    assert cond["Conditions"] == [{"Type": "Equals", "RightValue": True, "LeftValue": {"Std:JsonGet": {
        "PropertyFile": {"Get": "Steps.total.PropertyFiles.total_emits"}, "Path": "cond_0"}}}]
    assert [s["Name"] for s in cond["IfSteps"]] == ["publish"] and cond["ElseSteps"] == []
    total = top["total"]
    assert total["PropertyFiles"] == [{"PropertyFileName": "total_emits", "OutputName": "conveyor",
                                       "FilePath": "emits.json"}]
    (output,) = total["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == EMIT_DIR
    assert output["S3Output"]["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        f"{ROOT}/sagemaker-emits", {"Get": "Execution.PipelineExecutionId"}, "total"]}}
    argv = total["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert argv[argv.index("--emit-json") + 1] == f"{EMIT_DIR}/emits.json"
    # only what a condition reads is emitted: the fan-out's list stays with the entry point
    assert "PropertyFiles" not in top["make_shards"] and "--emit-json" not in \
        top["make_shards"]["Arguments"]["AppSpecification"]["ContainerArguments"]


def test_nested_conditions_nest_condition_steps(tmp_path: Path) -> None:
    result = _export(nested, tmp_path)
    top = {s["Name"]: s for s in _definition(result)["Steps"]}
    outer = top["when_cond_0"]["Arguments"]
    assert [s["Name"] for s in outer["IfSteps"]] == ["big", "when_cond_0_cond_1"]
    inner = outer["IfSteps"][1]["Arguments"]
    assert inner["Conditions"][0]["LeftValue"]["Std:JsonGet"]["PropertyFile"] == {
        "Get": "Steps.big.PropertyFiles.big_emits"}
    assert [s["Name"] for s in inner["IfSteps"]] == ["gpu"]
    check_definition(result)


def test_a_fan_out_is_one_step_over_every_element_and_a_join_and_condition_follow(tmp_path: Path) -> None:
    result = _export(fanned, tmp_path, options=FANNED_OPTIONS)
    steps = _steps(result)
    square_args = steps["square"]["Arguments"]
    argv = square_args["AppSpecification"]["ContainerArguments"]
    assert argv[argv.index("--map-index") + 1] == "all"
    assert square_args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    entry = square_args["AppSpecification"]["ContainerEntrypoint"]
    assert entry[:2] == ["/bin/sh", "-c"] and "-m conveyor.export.sagemaker" in entry[2]
    assert entry[-5:] == ["python", "-m", "conveyor", "step", "exec"]
    for name in ("count", "add", "check"):   # one host each: a step that is not mapped runs once
        assert steps[name]["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert steps["add"]["DependsOn"] == ["square"]
    static = steps["square_2"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert static[static.index("--map-index") + 1] == "all"
    check_definition(result)


@pytest.mark.slow
def test_the_sdk_builds_the_same_definitions(tmp_path: Path) -> None:
    """Enum and json parameters, a literal role, nested conditions, a sharded fan-out with a join and a
    condition after it: the SDK's classes write each definition exactly as exported (one SDK process)."""
    check_with_sdk([_export(typed, tmp_path / "typed", options=ROLE_OPTION), _export(nested, tmp_path / "nested"),
                    _export(fanned, tmp_path / "fanned", options=FANNED_OPTIONS)])


def test_the_sharded_entry_point_sets_the_hosts_share_then_runs_the_step(tmp_path: Path) -> None:
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-3"],
                                  "network_interface_name": "eth0"}))
    assert map_shard(config) == "1/3"
    result = _export(fanned, tmp_path / "out", options={"map_instances": "2"})
    entry = _steps(result)["square"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"]
    # the real wrapper, with this test's interpreter and the config where this test wrote it
    wrapper = entry[2].replace("python -m", f"{sys.executable} -m")
    show = "import os, sys; print(os.environ['CONVEYOR_MAP_SHARD'], sys.argv[1:])"
    shown = subprocess.run(["/bin/sh", "-c", wrapper.replace(RESOURCE_CONFIG, str(config)), "conveyor",
                            sys.executable, "-c", show, "--node", "x"], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "1/3 ['--node', 'x']"
    missing = subprocess.run(["/bin/sh", "-c", wrapper.replace(RESOURCE_CONFIG, str(tmp_path / "none.json")),
                              "conveyor", sys.executable, "-c", "print('ran')"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert missing.returncode != 0 and "ran" not in missing.stdout   # no config: the step does not run unsharded


def test_resources_map_to_instance_types(tmp_path: Path) -> None:
    result = _export(nested, tmp_path)
    steps = _steps(result)
    cluster = {n: s["Arguments"]["ProcessingResources"]["ClusterConfig"] for n, s in steps.items()
               if s["Type"] == "Processing"}
    assert cluster["pick"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert cluster["big"]["InstanceType"] == "ml.r5.2xlarge"      # 8 CPUs, 48 GiB
    assert cluster["gpu"]["InstanceType"] == "ml.g4dn.2xlarge"    # 1 GPU, 20 GiB
    chosen = _export(nested, tmp_path / "typed", instance_types={"big": "ml.c5.9xlarge", "*": "ml.m5.xlarge"},
                     options={"volume_gb": "100"})
    cluster = {n: s["Arguments"]["ProcessingResources"]["ClusterConfig"] for n, s in _steps(chosen).items()
               if s["Type"] == "Processing"}
    assert cluster["big"]["InstanceType"] == "ml.c5.9xlarge" and cluster["gpu"]["InstanceType"] == "ml.m5.xlarge"
    assert {c["VolumeSizeInGB"] for c in cluster.values()} == {100}


def test_every_default_instance_is_one_a_processing_job_takes() -> None:
    known = set(processing_instance_types())
    assert [name for name, *_ in INSTANCES if name not in known] == []


def test_deadlines_and_retries_map_to_the_job_and_its_retry_policies(tmp_path: Path) -> None:
    steps = _steps(_export(BRANCHY, tmp_path))
    score = steps["score"]
    assert score["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 3 * 120 + 600}
    assert [p["ExceptionType"] for p in score["RetryPolicies"]] == [
        ["Step.SERVICE_FAULT", "Step.THROTTLING"],
        ["SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"]]
    assert {p["MaxAttempts"] for p in score["RetryPolicies"]} == {2}
    assert "RetryPolicies" not in steps["total"] and "StoppingCondition" not in steps["total"]
    assert steps["total"]["Arguments"]["Environment"] == {"CONVEYOR_ARTIFACT_ROOT": ROOT}


def test_the_api_model_refuses_what_the_service_would(tmp_path: Path) -> None:
    """The validator can fail: a job argument over 256 characters and an unknown instance type."""
    step = _steps(_export(BRANCHY, tmp_path))["total"]
    params = _definition(_export(BRANCHY, tmp_path))["Parameters"]
    assert validate_processing_arguments(step["Arguments"], params) == []
    args = json.loads(json.dumps(step["Arguments"]))
    args["AppSpecification"]["ContainerArguments"].append("x" * 300)
    args["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.nope.large"
    del args["RoleArn"]
    errors = "\n".join(validate_processing_arguments(args, params))
    assert "300 characters, at most 256" in errors and "ml.nope.large" in errors and "RoleArn" in errors


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"artifact_root": "/data/artifacts"}, "Step 'total'.*only to S3.*emit_root=s3://"),
    ({"instance_types": {"score": "n1-standard-4"}}, "Step 'score'.*not a SageMaker instance type.*ml.m5.xlarge"),
    ({"options": {"map_instances": "total=2"}}, "'total' is not a fanned-out step.*score"),
    ({"options": {"map_instances": "0"}}, "not an instance count from 1 to 100"),
    ({"options": {"role": "my-role"}}, "not an IAM role ARN"),
    ({"options": {"pipeline_name": "bad_name!"}}, "not one SageMaker takes.*pipeline_name"),
    ({"options": {"volume_gb": "lots"}}, "volume_gb"),
])
def test_what_sagemaker_cannot_take_is_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        _export(BRANCHY, tmp_path, **kwargs)
    assert not (tmp_path / "pipeline.json").exists()


def test_a_deadline_over_the_jobs_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Step 'forever'.*over a processing job's limit of 777600 s"):
        _export(too_long, tmp_path)


def test_a_parameter_too_long_for_a_job_argument_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Parameter 'config'.*at most 256 characters.*URI of a file"):
        _export(typed, tmp_path, params={"config": {"k": "v" * 300}})


def test_a_gpu_count_no_default_instance_has_is_refused() -> None:
    import dataclasses

    plan = lower(nested, {}, ref="t.py:nested", project_dir="/p", image="i", env={"CONVEYOR_ARTIFACT_ROOT": ROOT})
    tasks = dict(plan.tasks)
    tasks["gpu"] = dataclasses.replace(tasks["gpu"], gpus=16)
    with pytest.raises(ExportError, match=r"Step 'gpu'.*16 GPUs.*--instance-type STEP=ml.TYPE"):
        SageMakerTarget().compile(dataclasses.replace(plan, tasks=tasks), ExportOptions({}))


def test_more_parameters_than_a_job_takes_arguments_are_refused() -> None:
    import dataclasses

    from conveyor.export import ParamSpec

    plan = lower(nested, {}, ref="t.py:nested", project_dir="/p", image="i", env={"CONVEYOR_ARTIFACT_ROOT": ROOT})
    many = dataclasses.replace(plan, params=tuple(ParamSpec(f"p{i}", "integer", i) for i in range(50)))
    with pytest.raises(ExportError, match=r"Step 'pick'.*over the 100 a processing job takes.*one json parameter"):
        SageMakerTarget().compile(many, ExportOptions({}))


def test_a_condition_whose_decider_runs_outside_its_branch_is_refused() -> None:
    """A hand-made plan whose gate order would read a step that has not run: no ConditionStep can."""
    import dataclasses

    plan = lower(nested, {}, ref="t.py:nested", project_dir="/p", image="i", env={"CONVEYOR_ARTIFACT_ROOT": ROOT})
    tasks = dict(plan.tasks)
    tasks["gpu"] = dataclasses.replace(tasks["gpu"], gates=tuple(reversed(tasks["gpu"].gates)))
    with pytest.raises(ExportError, match=r"Step 'gpu'.*decided by 'big'.*ConditionStep reads only"):
        SageMakerTarget().compile(dataclasses.replace(plan, tasks=tasks), ExportOptions({}))


# --- submission ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_submit_script_creates_and_starts_the_pipeline_on_moto(tmp_path: Path) -> None:
    import boto3

    from tests.export.venvs import target_venv
    from tests.store.emulators import moto_s3

    aws = target_venv("awscli", ["awscli==1.46.3"]) / "bin"
    result = _export(BRANCHY, tmp_path)
    assert result.commands[2].startswith("aws sagemaker create-pipeline --pipeline-name branchy --role-arn ")
    assert result.commands[3].startswith("aws sagemaker start-pipeline-execution --pipeline-name branchy")
    role = "arn:aws:iam::123456789012:role/pipelines"
    with moto_s3() as moto:
        env = {**os.environ, **moto.environment, "ROLE_ARN": role, "PATH": f"{aws}:{os.environ['PATH']}"}
        for _ in range(2):   # the second run updates the pipeline, then starts it again
            done = subprocess.run(["sh", str(tmp_path / "submit.sh")], env=env, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
        client = boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        described = client.describe_pipeline(PipelineName="branchy")
        assert json.loads(described["PipelineDefinition"]) == _definition(result)
        assert described["RoleArn"] == role
        executions = client.list_pipeline_executions(PipelineName="branchy")["PipelineExecutionSummaries"]
        assert len(executions) == 2
        given = client.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=executions[0]["PipelineExecutionArn"])["PipelineParameters"]
        assert given == [{"Name": "conveyor_role_arn", "Value": role}]


# --- running the definition --------------------------------------------------------------------

@pytest.mark.slow
def test_the_definition_runs_end_to_end_with_two_hosts_sharing_the_fan_out(client, tmp_path: Path) -> None:
    from conveyor.runtime.imports import import_run
    from tests.export.sagemaker_local import LocalPipeline

    shared = tmp_path / "root"
    result = export(BRANCHY, "sagemaker", image="unused", out=tmp_path / "out", project_dir=REPO, workdir=str(REPO),
                    python=sys.executable, artifact_root=str(shared), params={"n": 5}, build_context=False,
                    options={"emit_root": "s3://conveyor-demo/emits", "map_instances": "2"})
    definition = _definition(result)
    role = {"conveyor_role_arn": "arn:aws:iam::123456789012:role/pipelines"}
    env = {"CONVEYOR_HOME": str(tmp_path / "task-home")}
    ex = LocalPipeline(definition, "smexec-1", tmp_path / "work", parameters=role, env=env).run()
    assert ex.ok, ex.output
    assert ex.codes["score"] == [0, 0]                      # one job, two hosts, each its share
    assert ex.conditions == {"when_cond_0": True} and ex.not_executed == []
    import_run(client, "smexec-1", str(shared))
    run = client.get_run("smexec-1")
    assert run.status == "succeeded" and run.parameters["n"] == 5
    assert sorted(run.steps) == sorted(["make_shards", *[f"score[{i}]" for i in range(5)], "total", "publish",
                                        "report"])
    assert run.output("total") == {"total": 45.0, "count": 5}
    # a parameter given at start changes what the condition decides; the finished steps are cache hits
    again = LocalPipeline(definition, "smexec-2", tmp_path / "work2", parameters={**role, "threshold": "1000"},
                          env=env).run()
    assert again.ok, again.output
    assert again.conditions == {"when_cond_0": False} and again.not_executed == ["publish"]


def test_exporting_imports_neither_the_sdk_nor_botocore() -> None:
    code = ("import sys, conveyor.export.sagemaker; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sagemaker', 'botocore', 'boto3'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
