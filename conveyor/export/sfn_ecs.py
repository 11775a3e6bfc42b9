"""The ECS side of a Step Functions export: its options, the tasks' sizes, the task definition that
runs the image, and the IAM policies of the state machine's role and of the tasks' role."""

from __future__ import annotations

import math
import re
from typing import Any

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions
from conveyor.export.plan import Plan

CONTAINER = "conveyor"
CALLBACK_MODULE = "conveyor.export.sfn_callback"

# Fargate's task sizes: CPU units -> the memory sizes (MiB) it allows
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}


class EcsConfig:
    """The export's options (the machine's name, the cluster, launch type, network, sizes, roles), checked once."""

    def __init__(self, plan: Plan, options: ExportOptions) -> None:
        o = options.get
        self.name = o("name") or re.sub(r"[^A-Za-z0-9_-]", "-", plan.pipeline)[:80]
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", self.name):
            raise ExportError(f"Option name={self.name!r} cannot name a state machine and its task definition: use "
                              "up to 80 letters, digits, '-' and '_'.")
        self.cluster = o("cluster") or "conveyor"
        self.launch_type = (o("launch-type") or "EC2").upper()
        if self.launch_type not in ("EC2", "FARGATE"):
            raise ExportError(f"Option launch-type={o('launch-type')!r} is not an ECS launch type. "
                              "Use launch-type=EC2 or launch-type=FARGATE.")
        self.subnets = _list(o("subnets"))
        self.security_groups = _list(o("security-groups"))
        self.public_ip = (o("assign-public-ip") or "DISABLED").upper()
        if self.public_ip not in ("ENABLED", "DISABLED"):
            raise ExportError("Option assign-public-ip must be ENABLED or DISABLED.")
        if self.launch_type == "FARGATE" and not self.subnets:
            raise ExportError("Fargate tasks run in a VPC, and no subnet was given. Pass --option "
                              "subnets=subnet-1,subnet-2 (and security-groups=sg-1), or use launch-type=EC2.")
        self.cpu = _int_option(o("cpu") or "1024", "cpu")
        self.memory = _int_option(o("memory") or "2048", "memory")
        self.task_role_arn = o("task-role-arn")
        self.execution_role_arn = o("execution-role-arn")
        self.role_arn = o("role-arn")
        self.log_group = o("log-group")
        self.region = o("region")
        self.max_concurrency = _int_option(o("max-concurrency") or "0", "max-concurrency")
        if self.launch_type == "FARGATE":
            self.cpu, self.memory = fargate_size(self.cpu / 1024, self.memory * 2**20, "(the task definition)")


def _list(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _int_option(text: str, key: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ExportError(f"Option {key}={text!r} is not a whole number.") from None
    if value < 0:
        raise ExportError(f"Option {key}={text!r} must not be negative.")
    return value


def fargate_size(cpus: float | None, memory_bytes: int | None, step: str) -> tuple[int, int]:
    """The smallest Fargate (CPU units, MiB) that holds ``cpus`` and ``memory_bytes``."""
    units = 0 if cpus is None else math.ceil(cpus * 1024)
    mib = 0 if memory_bytes is None else math.ceil(memory_bytes / 2**20)
    for cpu, sizes in FARGATE_SIZES.items():
        if cpu >= units and sizes[-1] >= mib:
            return cpu, next(m for m in sizes if m >= mib)
    raise ExportError(f"Step '{step}': {cpus} CPUs and {mib} MiB exceed Fargate's largest task (16 vCPUs, "
                      "120 GiB). Use --option launch-type=EC2 with instances that large, or ask for less.")


def task_definition(plan: Plan, cfg: EcsConfig) -> dict[str, Any]:
    """The ECS task definition (``register-task-definition --cli-input-json``) that runs the image."""
    container: dict[str, Any] = {"name": CONTAINER, "image": plan.image, "essential": True,
                                 # runs the step entry point, then reports to Step Functions with the token
                                 "entryPoint": [plan.python, "-m", CALLBACK_MODULE],
                                 # a soft floor only: the task-level memory (and its overrides) is the limit
                                 "memoryReservation": 128,
                                 "environment": [{"name": k, "value": v} for k, v in sorted(plan.env.items())]}
    if cfg.log_group:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": cfg.log_group, "awslogs-region": cfg.region or "us-east-1",
            "awslogs-stream-prefix": cfg.name}}
    td: dict[str, Any] = {"family": cfg.name, "requiresCompatibilities": [cfg.launch_type],
                          "cpu": str(cfg.cpu), "memory": str(cfg.memory), "containerDefinitions": [container]}
    if cfg.launch_type == "FARGATE":
        td["networkMode"] = "awsvpc"
    if cfg.task_role_arn:
        td["taskRoleArn"] = cfg.task_role_arn
    if cfg.execution_role_arn:
        td["executionRoleArn"] = cfg.execution_role_arn
    return td


def machine_policy(cfg: EcsConfig) -> dict[str, Any]:
    """What the state machine's role may do: run and stop the task definition, pass its roles."""
    roles = [r for r in (cfg.task_role_arn, cfg.execution_role_arn) if r]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "RunConveyorTasks", "Effect": "Allow", "Action": ["ecs:RunTask"],
         "Resource": [f"arn:aws:ecs:*:*:task-definition/{cfg.name}", f"arn:aws:ecs:*:*:task-definition/{cfg.name}:*"]},
        {"Sid": "StopConveyorTasks", "Effect": "Allow", "Action": ["ecs:StopTask", "ecs:DescribeTasks"],
         "Resource": "*"},
        {"Sid": "PassTaskRoles", "Effect": "Allow", "Action": "iam:PassRole", "Resource": roles or "*",
         "Condition": {"StringLike": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
    ]}


def task_role_policy() -> dict[str, Any]:
    """What the tasks' role needs beyond the artifact root: to hand back their results."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReportToStepFunctions", "Effect": "Allow",
         "Action": ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
         "Resource": "*"},
    ]}
