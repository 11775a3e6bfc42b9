"""Executions of an exported state machine in moto's Step Functions interpreter (its ASL parser).

moto runs the definition itself: the Pass, Choice, Parallel and Map states, the intrinsic functions,
the retriers, and each ECS ``runTask.waitForTaskToken`` against moto's ECS. Every ECS task the
machine starts is answered either by the caller, as the entry point would (the values it emits,
through SendTaskSuccess, or an exit status, through SendTaskFailure), or for real: the task
definition's entry point runs the step entry point on this machine with the container's command
and environment and reports with the task token.

One gap in moto is filled here: its copy of the interpreter leaves out the step that turns a Task
state's PascalCase parameters into the service's request and the response back
(``_normalise_parameters``/``_normalise_response`` are empty), so every ECS call fails with a
KeyError. The fill-in does that conversion with botocore's own service model, using the converters
moto's copy already has (``_to_boto_request``/``_from_boto_response``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.export import export
from conveyor.export.sfn_callback import (
    report_failure_to_step_functions,
    report_to_step_functions,
    run_and_report,
)
from conveyor.export.stepfunctions import CALLBACK_MODULE

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
GUARD_S = 120     # a stuck execution fails the test with its history instead of hanging it


@dataclass
class TaskRun:
    """One ECS task the machine started: its command and environment."""

    argv: list[str]
    env: dict[str, str]

    def arg(self, flag: str) -> str | None:
        return self.argv[self.argv.index(flag) + 1] if flag in self.argv else None

    @property
    def node(self) -> str:
        return self.arg("--node") or ""

    @property
    def map_index(self) -> str | None:
        return self.arg("--map-index")

    @property
    def params(self) -> dict[str, str]:
        pairs = [self.argv[i + 1] for i, a in enumerate(self.argv) if a == "-p"]
        return dict(p.split("=", 1) for p in pairs)


@dataclass
class Execution:
    status: str
    output: Any
    failure: tuple[str, str] | None
    tasks: list[TaskRun] = field(default_factory=list)
    history: list[str] = field(default_factory=list)


Answer = Callable[[TaskRun], "dict[str, Any] | int"]


@contextlib.contextmanager
def _aws() -> Iterator[None]:
    import botocore.session
    from moto import mock_aws
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service as svc,
    )

    @functools.cache
    def operation(service: str, action: str) -> Any:   # cached: loading a service model costs seconds
        model = botocore.session.get_session().get_service_model(service)
        by_lower = {n.lower(): n for n in model.operation_names}
        return model.operation_model(by_lower[action.replace("_", "").lower()])

    def normalise_parameters(self: Any, parameters: dict, boto_service_name: str | None = None,
                             service_action_name: str | None = None) -> None:
        op = operation(boto_service_name or self._get_boto_service_name(),
                       service_action_name or self.resource.api_action)
        self._to_boto_request(parameters, op.input_shape)

    def normalise_response(self: Any, response: Any, boto_service_name: str | None = None,
                           service_action_name: str | None = None) -> None:
        op = operation(boto_service_name or self._get_boto_service_name(),
                       service_action_name or self.resource.api_action)
        self._from_boto_response(response, op.output_shape)

    saved = svc.StateTaskService._normalise_parameters, svc.StateTaskService._normalise_response
    keys = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                           "MOTO_EC2_LOAD_DEFAULT_AMIS")}
    # moto's default AMIs cost seconds to load and the container instance needs none of them
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
                      MOTO_EC2_LOAD_DEFAULT_AMIS="false")
    svc.StateTaskService._normalise_parameters = normalise_parameters
    svc.StateTaskService._normalise_response = normalise_response
    try:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            yield
    finally:
        svc.StateTaskService._normalise_parameters, svc.StateTaskService._normalise_response = saved
        for k, v in keys.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_machine(ref: Any, tmp_path: Path, executions: dict[str, dict[str, Any]], answer: Answer | None, *,
                options: dict[str, str] | None = None, **export_args: Any) -> dict[str, Execution]:
    """Export ``ref``, create its task definition and machine in moto, and run ``executions`` (by
    name: their input) side by side to their ends.

    ``answer`` replies for each task (it tells executions apart by ``--run-id``); without one, each
    task runs for real: the task definition's entry point (:mod:`conveyor.export.sfn_callback`)
    with the container's command and environment, on this machine, a few at a time.
    """
    import boto3
    from moto.ec2 import utils as ec2_utils

    out = tmp_path / f"sfn-{uuid.uuid4().hex[:8]}"
    args = {"artifact_root": "s3://conveyor-demo/artifacts", "project_dir": HERE.parents[1], **export_args}
    with _aws(), ThreadPoolExecutor(max_workers=3) as pool:
        result = export(ref, "stepfunctions", image="registry.example/conveyor/demo:1", out=out,
                        build_context=False, options=options, **args)
        files = {f.name: f for f in result.files}
        definition = json.loads(files["task-definition.json"].read_text())
        ecs, sfn = boto3.client("ecs", region_name=REGION), boto3.client("stepfunctions", region_name=REGION)
        cluster = ecs.create_cluster(clusterName="conveyor")["cluster"]["clusterName"]
        # the EC2 launch type places tasks on a container instance
        instance = boto3.resource("ec2", region_name=REGION).create_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[0]
        ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(
            ec2_utils.generate_instance_identity_document(instance)))
        ecs.register_task_definition(**definition)
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="conveyor-sfn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        machine = sfn.create_state_machine(name="branchy", roleArn=role,
                                           definition=files["state-machine.asl.json"].read_text())
        arns = {name: sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name=name,
                                          input=json.dumps(given))["executionArn"]
                for name, given in executions.items()}
        runs: dict[str, list[TaskRun]] = {name: [] for name in executions}
        described: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        running: list[Future[int]] = []
        give_up = time.monotonic() + GUARD_S
        while len(described) < len(arns) and time.monotonic() < give_up:
            for name, arn in arns.items():
                if name not in described:
                    state = sfn.describe_execution(executionArn=arn)
                    if state["status"] != "RUNNING":
                        described[name] = state
            for task_arn in ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]:
                if task_arn in seen:
                    continue
                task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
                override = task["overrides"]["containerOverrides"][0]
                env = {e["name"]: e["value"] for e in override.get("environment", [])}
                run = TaskRun(list(override["command"]), env)
                if answer is None:
                    running.append(pool.submit(_run_task, definition, run, tmp_path))
                elif not _reply(answer(run), {**env, "AWS_REGION": REGION}):
                    continue   # moto has not registered the token yet: answered on the next round
                seen.add(task_arn)
                runs[run.arg("--run-id") or ""].append(run)
                ecs.stop_task(cluster=cluster, task=task_arn, reason="the step ended")
            for f in [f for f in running if f.done()]:
                f.result()   # a task whose report failed fails the test with its error
                running.remove(f)
            time.sleep(0.05)
        done = {}
        for name, arn in arns.items():
            state = described.get(name) or sfn.describe_execution(executionArn=arn)
            history = [e["type"] for e in sfn.get_execution_history(executionArn=arn)["events"]]
            output = json.loads(state["output"]) if state.get("output") else None
            failure = (state["error"], state.get("cause", "")) if state.get("error") else None
            done[name] = Execution(state["status"], output, failure, runs[name], history)
        return done


def _reply(reply: dict[str, Any] | int, env: dict[str, str]) -> bool:
    """Report a scripted answer; False when moto's interpreter has not registered the token yet
    (it does so just after RunTask returns, while Step Functions does before)."""
    try:
        if isinstance(reply, int):
            report_failure_to_step_functions(reply, f"exit status {reply}", env)
        else:
            report_to_step_functions(reply, env)
    except ConveyorError as exc:
        if "Invalid Token" in str(exc):
            return False
        raise
    return True


def _run_task(definition: dict[str, Any], run: TaskRun, tmp_path: Path) -> int:
    """What the container does: the task definition's entry point with the overridden command."""
    container = definition["containerDefinitions"][0]
    python, flag, module = container["entryPoint"]
    assert (flag, module) == ("-m", CALLBACK_MODULE), container["entryPoint"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "AWS_"))}
    env.update({e["name"]: e["value"] for e in container.get("environment", [])})
    env.update(run.env)
    env.update(AWS_REGION=REGION, CONVEYOR_HOME=str(tmp_path / "task-home"))
    return run_and_report(run.argv, env, python=python)
