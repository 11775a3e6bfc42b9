"""Step Functions: the machine's structure, its parameters, resources and refusals, and executions of it
in moto's ASL interpreter (the Step Functions parser moto ships), where each ECS task the machine starts
is answered through the task token as the entry point answers it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

import conveyor as cv
from conveyor.errors import ConfigurationError, ExportError
from conveyor.export import ExportOptions, export
from conveyor.export.plan import lower
from conveyor.export.sfn_callback import report_to_step_functions
from conveyor.export.stepfunctions import (
    CALLBACK_MODULE,
    StepFunctionsTarget,
    fargate_size,
)
from conveyor.runtime.imports import import_run
from conveyor.runtime.loader import load_pipeline
from tests.export.sfn_interpreter import Execution, TaskRun, run_machine
from tests.export.validate_stepfunctions import (
    check_run_task,
    check_task_definition,
    lint,
    walk,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRANCHY = f"{HERE / 'pipelines' / 'branchy.py'}:branchy"


def _compile(pipeline: Any, options: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    pipeline = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    plan = lower(pipeline, kw.pop("params", {}), ref="p.py:x", project_dir="/p", image="img:1", **kw)
    files = StepFunctionsTarget().compile(plan, ExportOptions(options or {}))
    return {name: json.loads(text) for name, text in files.items()}


def _states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(walk(machine))


def _task(machine: dict[str, Any], name: str) -> dict[str, Any]:
    states = _states(machine)
    state = states[name]
    return states[f"{name} [element]"] if state["Type"] == "Map" else state


# --- pipelines with the constructs these tests need --------------------------------------------

@cv.step(cpus=2, memory="3Gi", timeout=60, retries=1, backoff=4)
def big(x: int) -> int:
    return x


@cv.step(gpus=1)
def gpu(x: int) -> int:
    return x


@cv.step
def pair(x: int) -> int:
    return 2 * x


@cv.step
def seed(mode: str) -> int:
    return len(mode)


@cv.pipeline
def sized(mode: Literal["fast", "slow"] = "fast", extra: dict | None = None):
    s = seed(mode)
    big(s)
    gpu(s)


@cv.pipeline
def cpu_only(n: int = 1):
    big(seed("x"))


@cv.pipeline
def chained():
    first = pair.map(x=[1, 2, 3])      # known at export
    pair.map(x=first)                  # over the same elements


# --- structure --------------------------------------------------------------------------------------

def test_gates_become_choices_on_the_deciders_boolean_and_fan_outs_maps_over_the_emitted_list() -> None:
    machine = _compile(BRANCHY)["state-machine.asl.json"]
    states = _states(machine)
    score = states["score"]
    assert score["Type"] == "Map" and score["ItemsPath"] == "$.emitted.make_shards.fanout_score"
    assert score["ItemSelector"] == {"params.$": "$.params", "index.$": "$$.Map.Item.Value"}
    assert "MaxConcurrency" not in score
    gate = states["Gate publish"]
    assert gate["Choices"] == [{"Variable": "$.emitted.total.cond_0", "BooleanEquals": True, "Next": "publish"}]
    assert states[gate["Default"]] == {"Type": "Pass", "Comment": "a condition is false: what a skipped step emits",
                                       "Result": {}, "End": True}
    # publish and report wait only for total: they run side by side
    parallel = machine["States"]["Parallel 4"]
    assert [b["StartAt"] for b in parallel["Branches"]] == ["Gate publish", "report"]
    assert machine["States"]["total"]["Next"] == "Parallel 4"
    assert _compile(BRANCHY, {"max-concurrency": "5"})["state-machine.asl.json"]["States"]["score"][
        "MaxConcurrency"] == 5


def test_a_skipped_decider_hands_its_dependents_false_and_an_empty_list() -> None:
    @cv.step
    def flag(x: int) -> bool:
        return x > 1

    @cv.step
    def items(x: int) -> list[int]:
        return [x]

    @cv.pipeline
    def nested(n: int = 1):
        with cv.when(flag(n)):
            xs = items(n)
            pair.map(x=xs)
    machine = _compile(nested)["state-machine.asl.json"]
    states = _states(machine)
    assert states["Skip items"]["Result"] == {"fanout_pair": []}
    assert states["Skip items"]["ResultPath"] == "$.emitted.items"
    assert states["Gate pair"]["Choices"][0]["Variable"] == "$.emitted.flag.cond_0"
    assert states["pair"]["ItemsPath"] == "$.emitted.items.fanout_pair"


def test_a_list_known_at_export_is_mapped_from_the_input_and_a_map_over_a_map_iterates_the_same_elements() -> None:
    machine = _compile(chained)["state-machine.asl.json"]
    assert machine["States"]["Parameters"]["Parameters"]["static"] == {"pair": [0, 1, 2], "pair_2": [0, 1, 2]}
    assert machine["States"]["pair"]["ItemsPath"] == "$.static.pair"
    assert machine["States"]["pair_2"]["ItemsPath"] == "$.static.pair_2"
    assert machine["States"]["pair"]["Next"] == "pair_2"


@cv.step
def halve(x: int) -> float:
    return x / 2


@cv.step
def listing(n: int) -> list[int]:
    return list(range(n))


@cv.pipeline
def two_maps(n: int = 2):
    xs = listing(n)
    pair.map(x=xs)
    halve.map(x=xs)


def test_independent_fan_outs_run_as_maps_in_one_parallel_state(tmp_path: Path) -> None:
    machine = _compile(two_maps)["state-machine.asl.json"]
    parallel = machine["States"]["Parallel 2"]
    maps = [b["States"][b["StartAt"]] for b in parallel["Branches"]]
    assert [m["Type"] for m in maps] == ["Map", "Map"]
    assert [m["ItemsPath"] for m in maps] == ["$.emitted.listing.fanout_pair", "$.emitted.listing.fanout_halve"]
    assert all(m["OutputPath"] is None for m in maps) and parallel["ResultPath"] is None
    (tmp_path / "m.json").write_text(json.dumps(machine))
    lint(tmp_path / "m.json")


# --- parameters ----------------------------------------------------------------------------------

def test_parameters_are_the_input_merged_over_typed_defaults_and_checked_by_type() -> None:
    files = _compile(sized, params={"mode": "slow"})
    machine = files["state-machine.asl.json"]
    head = machine["States"]["Parameters"]["Parameters"]
    assert head["defaults"] == {"mode": "slow", "extra": None, "conveyor_resume_from": ""}
    assert head["input.$"] == "$"
    assert machine["States"]["Merge parameters"]["Parameters"]["params.$"] == \
        "States.JsonMerge($.defaults, $.input, false)"
    assert files["input.json"] == head["defaults"]
    rules = machine["States"]["Check parameters"]["Choices"]
    mode = next(r for r in rules if r["Next"] == "Bad parameter mode")
    assert mode == {"Or": [{"Not": {"Variable": "$.params.mode", "IsString": True}},
                           {"Not": {"Or": [{"Variable": "$.params.mode", "StringEquals": "fast"},
                                           {"Variable": "$.params.mode", "StringEquals": "slow"}]}}],
                    "Next": "Bad parameter mode"}
    assert not any(r["Next"] == "Bad parameter extra" for r in rules)   # JSON: any value
    command = _task(machine, "seed")["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
    assert "'-p', States.Format('mode={}', $.params.mode)" in command
    assert "'-p', States.Format('extra={}', States.JsonToString($.params.extra))" in command


def test_the_resume_parameter_defaults_to_the_exported_run_and_reaches_every_task() -> None:
    machine = _compile(BRANCHY, resume_from="run-41")["state-machine.asl.json"]
    assert machine["States"]["Parameters"]["Parameters"]["defaults"]["conveyor_resume_from"] == "run-41"
    for name in ("make_shards", "score", "total", "publish", "report"):
        command = _task(machine, name)["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
        assert command.endswith("'--resume-from', $.params.conveyor_resume_from)"), name


def test_literal_text_is_escaped_for_intrinsic_functions(tmp_path: Path) -> None:
    plan = lower(load_pipeline(BRANCHY), {}, ref="it's {odd}.py:branchy", project_dir="/p", image="i")
    text = StepFunctionsTarget().compile(plan, ExportOptions({}))["state-machine.asl.json"]
    command = _task(json.loads(text), "total")["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
    assert "'--pipeline', 'it\\'s \\{odd\\}.py:branchy'" in command
    (tmp_path / "m.json").write_text(text)
    lint(tmp_path / "m.json")
    windows = lower(load_pipeline(BRANCHY), {}, ref="flows\\b.py:branchy", project_dir="/p", image="i")
    with pytest.raises(ExportError, match="backslash.*forward slashes"):
        StepFunctionsTarget().compile(windows, ExportOptions({}))


# --- resources ---------------------------------------------------------------------------------

def test_resources_on_ec2_are_exact_overrides_gpus_resource_requirements_and_instance_types_placement() -> None:
    files = _compile(sized, instance_types={"gpu": "g5.xlarge"})
    machine = files["state-machine.asl.json"]
    big_task = _task(machine, "big")
    assert big_task["Parameters"]["LaunchType"] == "EC2"
    overrides = big_task["Parameters"]["Overrides"]
    assert (overrides["Cpu"], overrides["Memory"]) == ("2048", "3072")
    assert big_task["TimeoutSeconds"] == 60 * 2 + 4 + 600
    assert big_task["Retry"][1] == {"ErrorEquals": ["States.TaskFailed", "States.Timeout"], "MaxAttempts": 1,
                                    "IntervalSeconds": 4, "BackoffRate": 2.0, "MaxDelaySeconds": 30}
    gpu_task = _task(machine, "gpu")
    assert gpu_task["Parameters"]["Overrides"]["ContainerOverrides"][0]["ResourceRequirements"] == [
        {"Type": "GPU", "Value": "1"}]
    assert gpu_task["Parameters"]["PlacementConstraints"] == [
        {"Type": "memberOf", "Expression": "attribute:ecs.instance-type == g5.xlarge"}]
    assert "Cpu" not in gpu_task["Parameters"]["Overrides"] and "TimeoutSeconds" not in gpu_task
    assert _task(machine, "seed")["Retry"] == [{"ErrorEquals": ["Conveyor.StepFailed", "Conveyor.UsageError"],
                                               "MaxAttempts": 0}]
    for name in ("big", "gpu"):
        check_run_task(name, _task(machine, name)["Parameters"])


def test_fargate_sizes_each_task_to_a_valid_combination_in_the_given_network(tmp_path: Path) -> None:
    files = _compile(cpu_only, {"launch-type": "fargate", "subnets": "subnet-a, subnet-b",
                                "security-groups": "sg-1", "task-role-arn": "arn:aws:iam::1:role/task"})
    task = _task(files["state-machine.asl.json"], "big")["Parameters"]
    assert task["LaunchType"] == "FARGATE"
    assert (task["Overrides"]["Cpu"], task["Overrides"]["Memory"]) == ("2048", "4096")
    assert task["NetworkConfiguration"] == {"AwsvpcConfiguration": {
        "Subnets": ["subnet-a", "subnet-b"], "AssignPublicIp": "DISABLED", "SecurityGroups": ["sg-1"]}}
    td = files["task-definition.json"]
    assert td["networkMode"] == "awsvpc" and td["requiresCompatibilities"] == ["FARGATE"]
    assert td["taskRoleArn"] == "arn:aws:iam::1:role/task"
    assert files["state-machine-policy.json"]["Statement"][2]["Resource"] == ["arn:aws:iam::1:role/task"]
    check_run_task("big", task)
    check_task_definition(td)
    (tmp_path / "m.json").write_text(json.dumps(files["state-machine.asl.json"]))
    lint(tmp_path / "m.json")
    assert fargate_size(0.25, 512 * 2**20, "s") == (256, 512)
    assert fargate_size(None, 9 * 2**30, "s") == (2048, 9216)
    assert fargate_size(5, None, "s") == (8192, 16384)


# --- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pipeline", "options", "match"), [
    (sized, {"launch-type": "FARGATE", "subnets": "s"}, "Step 'gpu' asks for 1 GPU.*launch-type=EC2"),
    (cpu_only, {"launch-type": "FARGATE"}, "no subnet was given.*subnets=.*launch-type=EC2"),
    (cpu_only, {"launch-type": "BATCH"}, "not an ECS launch type"),
    (cpu_only, {"max-concurrency": "lots"}, "max-concurrency='lots' is not a whole number"),
    (cpu_only, {"name": "my machine"}, "cannot name a state machine.*letters, digits"),
])
def test_what_the_target_cannot_run_is_refused_with_the_way_out(pipeline: Any, options: dict[str, str],
                                                                match: str) -> None:
    with pytest.raises(ExportError, match=match):
        _compile(pipeline, options)


def test_fargate_refuses_an_instance_type_and_a_task_beyond_its_largest_size() -> None:
    with pytest.raises(ExportError, match="Step 'big' asks for instance type m5.large.*launch-type=EC2"):
        _compile(cpu_only, {"launch-type": "FARGATE", "subnets": "s"}, instance_types={"big": "m5.large"})
    with pytest.raises(ExportError, match="Step 'huge'.*exceed Fargate's largest task.*launch-type=EC2"):
        fargate_size(32, None, "huge")


def test_the_next_commands_attach_the_policies_register_create_and_start(tmp_path: Path) -> None:
    result = export(BRANCHY, "stepfunctions", image="reg.example/demo:2", out=tmp_path, project_dir=REPO,
                    build_context=False, options={"role-arn": "arn:aws:iam::1:role/sfn", "region": "eu-west-1",
                                                  "name": "nightly"})
    commands = result.commands
    assert commands[0] == f"docker build -t reg.example/demo:2 {tmp_path / 'image'}"
    assert f"--role-name sfn --policy-name conveyor-nightly-machine --policy-document " \
           f"file://{tmp_path / 'state-machine-policy.json'}" in commands[2]
    assert "--role-name $TASK_ROLE_NAME" in commands[3]
    assert commands[4] == f"aws ecs register-task-definition --region eu-west-1 --cli-input-json " \
                          f"file://{tmp_path / 'task-definition.json'}"
    assert commands[5] == (f"aws stepfunctions create-state-machine --region eu-west-1 --name nightly --definition "
                           f"file://{tmp_path / 'state-machine.asl.json'} --role-arn arn:aws:iam::1:role/sfn")
    assert commands[6].endswith(f"stateMachine:nightly --input file://{tmp_path / 'input.json'}")
    assert json.loads((tmp_path / "task-definition.json").read_text())["family"] == "nightly"


def test_an_unknown_option_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no option clusterr.*cluster, launch-type"):
        export(BRANCHY, "stepfunctions", image="i", out=tmp_path, options={"clusterr": "c"},
               project_dir=HERE.parents[1], build_context=False)


def test_the_linters_reject_a_machine_that_names_a_missing_state(tmp_path: Path) -> None:
    machine = _compile(BRANCHY)["state-machine.asl.json"]
    machine["States"]["total"]["Next"] = "nowhere"
    (tmp_path / "m.json").write_text(json.dumps(machine))
    with pytest.raises(AssertionError, match="nowhere"):
        lint(tmp_path / "m.json")


def test_reporting_needs_the_task_token_and_without_one_the_step_does_not_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CONVEYOR_SFN_TASK_TOKEN is not set"):
        report_to_step_functions({"cond_0": True}, {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    done = subprocess.run([sys.executable, "-m", CALLBACK_MODULE, "step", "exec", "--project", str(REPO),
                           "--pipeline", "tests/export/pipelines/branchy.py:branchy", "--node", "make_shards",
                           "--run-id", "r1"], env={**env, "CONVEYOR_ARTIFACT_ROOT": str(tmp_path / "root")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "CONVEYOR_SFN_TASK_TOKEN is not set" in done.stderr, done.stderr
    assert not (tmp_path / "root").exists()


# --- executions in moto's ASL interpreter ----------------------------------------------------------

EXECUTIONS = {
    "gate-true": {"n": 2, "label": "nightly"},
    "gate-false": {"n": 2, "label": "nightly", "verbose": False, "conveyor_resume_from": "run-3"},
    "bad-parameter": {"n": "three"},
    "step-failed": {"n": 2},
    "task-lost": {"n": 2},
}


def _answer(run: TaskRun) -> dict[str, Any] | int:
    """What the entry point would report: the emitted values, or its exit status."""
    execution = run.arg("--run-id")
    if run.node == "score" and run.map_index == "1" and execution in ("step-failed", "task-lost"):
        return 1 if execution == "step-failed" else 137
    cond = execution != "gate-false"
    return {"make_shards": {"fanout_score": [0, 1]}, "total": {"cond_0": cond}}.get(run.node, {})


@pytest.fixture(scope="module")
def executions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Execution]:
    return run_machine(BRANCHY, tmp_path_factory.mktemp("sfn"), EXECUTIONS, _answer)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gate-true", "gate-false"])
def test_the_machine_runs_every_task_with_its_parameters_its_elements_and_its_gate(
        name: str, executions: dict[str, Execution]) -> None:
    done = executions[name]
    assert done.status == "SUCCEEDED", (done.failure, done.history)
    cond = name == "gate-true"
    ran = sorted((t.node, t.map_index) for t in done.tasks)
    expected = [("make_shards", None), ("report", None), ("score", "0"), ("score", "1"), ("total", None)]
    assert ran == sorted(expected + ([("publish", None)] if cond else []))
    verbose = "true" if cond else "false"
    for t in done.tasks:
        assert t.arg("--run-id") == name
        assert t.params == {"n": "2", "scale": "1.5", "threshold": "5.0", "label": "nightly", "verbose": verbose}
        assert t.env["CONVEYOR_ARTIFACT_ROOT"] == "s3://conveyor-demo/artifacts"
        assert t.env["CONVEYOR_SFN_TASK_TOKEN"]
    assert {t.arg("--resume-from") for t in done.tasks} == {"" if cond else "run-3"}
    assert done.output["emitted"]["total"] == {"cond_0": cond}
    assert done.output["params"]["conveyor_resume_from"] == ("" if cond else "run-3")


@pytest.mark.slow
def test_a_wrongly_typed_parameter_fails_the_execution_before_any_task(executions: dict[str, Execution]) -> None:
    bad = executions["bad-parameter"]
    assert bad.status == "FAILED" and bad.tasks == []
    assert bad.failure == ("Conveyor.BadParameter", "Parameter 'n' must be an integer (a JSON number).")


@pytest.mark.slow
def test_a_step_that_failed_for_good_is_not_run_again_and_a_lost_task_is(executions: dict[str, Execution]) -> None:
    final = executions["step-failed"]
    assert final.status == "FAILED" and final.failure is not None and final.failure[0] == "Conveyor.StepFailed"
    assert [t.map_index for t in final.tasks if t.node == "score"].count("1") == 1
    assert not any(t.node == "total" for t in final.tasks)
    lost = executions["task-lost"]
    assert lost.status == "FAILED" and lost.failure is not None and lost.failure[0] == "Conveyor.TaskError"
    # score has retries=2: Step Functions' own retrier starts the lost element twice more
    assert [t.map_index for t in lost.tasks if t.node == "score"].count("1") == 3


@pytest.mark.slow
def test_the_exported_machine_runs_the_real_steps_and_imports_as_a_run(client: Any, tmp_path: Path) -> None:
    shared = tmp_path / "shared-root"
    inputs = {"sfn-high": {"n": 2}, "sfn-low": {"n": 3, "scale": 2.0, "threshold": 100}}
    runs = run_machine(BRANCHY, tmp_path, inputs, None, artifact_root=str(shared), workdir=str(REPO),
                       python=sys.executable)
    high, low = runs["sfn-high"], runs["sfn-low"]
    assert high.status == "SUCCEEDED", (high.failure, high.history)
    # n=2, scale 1.5: the scores are 3.0 and 6.0, their total 9.0 clears 5.0; n=3 at scale 2.0
    # totals 24.0, short of 100 (other inputs everywhere, so neither execution reuses the other's steps)
    assert high.output["emitted"] == {"make_shards": {"fanout_score": [0, 1]}, "total": {"cond_0": True}}
    assert low.status == "SUCCEEDED" and low.output["emitted"]["total"] == {"cond_0": False}
    assert sorted(t.node for t in low.tasks) == ["make_shards", "report", "score", "score", "score", "total"]
    report = import_run(client, "sfn-high", str(shared))
    assert report.status == "succeeded"
    run = client.get_run("sfn-high")
    assert {name: s.status for name, s in run.steps.items()} == {
        "make_shards": "succeeded", "score[0]": "succeeded", "score[1]": "succeeded", "total": "succeeded",
        "publish": "succeeded", "report": "succeeded"}
    assert run.output("publish") == "run:9.0" and run.parameters["n"] == 2
