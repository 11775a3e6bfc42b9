"""AWS Step Functions: a plan as an Amazon States Language state machine whose tasks run on ECS.

Every task is an ECS ``RunTask`` with ``.waitForTaskToken``: Step Functions starts the image with
the task token in the container's environment (``CONVEYOR_SFN_TASK_TOKEN``) and waits until the
task hands back what the entry point emitted (``SendTaskSuccess``) or why it failed
(``SendTaskFailure``); the task definition runs the entry point under
:mod:`conveyor.export.sfn_callback`, which does that. The emitted JSON becomes the state's result,
so Choice states read the gates' booleans and Map states iterate over the fan-outs' lists natively.

The shape of the machine:

- ``Parameters`` (Pass) holds the defaults; ``Merge parameters`` (Pass) merges the execution's
  input over them (``States.JsonMerge``) into ``$.params``; ``Check parameters`` (Choice) fails the
  execution at once, naming the parameter, when a value has the wrong JSON type or is not one of
  its choices.
- The tasks in *levels*: a task's level is one more than the highest level of what it waits for
  (its upstream, its deciders, its fan-out source). A level of one task is that task's states in
  sequence; a level of several is one Parallel state with a branch per task, so independent steps
  run at the same time. A level waits for the whole previous level (a coarser order than the
  graph's, never a finer one).
- A gated task is preceded by a Choice on its gates (``BooleanEquals`` true, all of them); when one
  is false a Pass state stands in for it and emits what a skipped entry point emits (false and
  ``[]``), so what depends on it reads a value and is skipped in turn.
- A fan-out is a Map state over the source's emitted list (``ItemsPath``), or over a list known at
  export; each element's task gets ``--map-index`` from ``$$.Map.Item.Value``.

Resources: task-level ``Cpu``/``Memory`` overrides (sized to a valid Fargate combination on
Fargate), GPUs as the container's ``ResourceRequirements`` and instance types as a placement
constraint (EC2 launch type only: Fargate has neither, and such a step is refused).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions, build_commands
from conveyor.export.plan import RESUME_PARAM, ParamSpec, Plan, Task
from conveyor.export.sfn_ecs import (
    CALLBACK_MODULE,
    CONTAINER,
    EcsConfig,
    fargate_size,
    machine_policy,
    task_definition,
    task_role_policy,
)

__all__ = ["CALLBACK_MODULE", "RUN_TASK", "StepFunctionsTarget", "fargate_size"]

TOKEN_ENV = "CONVEYOR_SFN_TASK_TOKEN"
RUN_TASK = "arn:aws:states:::ecs:runTask.waitForTaskToken"
STEP_FAILED = "Conveyor.StepFailed"      # the entry point's own verdicts: a new attempt would fail the same way
USAGE_ERROR = "Conveyor.UsageError"
DEFINITION = "state-machine.asl.json"
TASK_DEFINITION = "task-definition.json"
MACHINE_POLICY = "state-machine-policy.json"
TASK_ROLE_POLICY = "task-role-policy.json"
INPUT = "input.json"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class StepFunctionsTarget:
    """AWS Step Functions (ASL) with ECS tasks; the state machine, task definition and IAM policies."""

    name: ClassVar[str] = "stepfunctions"
    extra: ClassVar[str] = "stepfunctions"
    option_names: ClassVar[tuple[str, ...]] = (
        "name", "cluster", "launch-type", "subnets", "security-groups", "assign-public-ip", "cpu", "memory",
        "task-role-arn", "execution-role-arn", "role-arn", "log-group", "region", "max-concurrency")

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        """The state machine, the ECS task definition, the IAM policies and a sample execution input."""
        plan.check()
        cfg = EcsConfig(plan, options)
        machine = _Machine(plan, cfg).definition()
        return {
            DEFINITION: _dump(machine),
            TASK_DEFINITION: _dump(task_definition(plan, cfg)),
            MACHINE_POLICY: _dump(machine_policy(cfg)),
            TASK_ROLE_POLICY: _dump(task_role_policy()),
            INPUT: _dump(defaults(plan)),
        }

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """Build and push the image, register the task definition, create the machine, start it."""
        cfg = EcsConfig(plan, options)
        where = {f.name: f for f in files}
        out = where[DEFINITION].parent
        region = f" --region {cfg.region}" if cfg.region else ""
        role = cfg.role_arn or "$STATE_MACHINE_ROLE_ARN"
        machine_role = cfg.role_arn.rpartition("/")[2] if cfg.role_arn else "$STATE_MACHINE_ROLE_NAME"
        task_role = cfg.task_role_arn.rpartition("/")[2] if cfg.task_role_arn else "$TASK_ROLE_NAME"
        return [
            *build_commands(plan, out),
            f"aws iam put-role-policy --role-name {machine_role} --policy-name conveyor-{cfg.name}-machine "
            f"--policy-document file://{where[MACHINE_POLICY]}",
            f"aws iam put-role-policy --role-name {task_role} --policy-name conveyor-{cfg.name}-report "
            f"--policy-document file://{where[TASK_ROLE_POLICY]}",
            f"aws ecs register-task-definition{region} --cli-input-json file://{where[TASK_DEFINITION]}",
            f"aws stepfunctions create-state-machine{region} --name {cfg.name} "
            f"--definition file://{where[DEFINITION]} --role-arn {role}",
            f"aws stepfunctions start-execution{region} --state-machine-arn "
            f"arn:aws:states:{cfg.region or '$AWS_REGION'}:$AWS_ACCOUNT_ID:stateMachine:{cfg.name} "
            f"--input file://{where[INPUT]}",
        ]


# --- the state machine ---------------------------------------------------------------------------

class _Machine:
    """Builds the ASL definition of one plan."""

    def __init__(self, plan: Plan, cfg: EcsConfig) -> None:
        self.plan = plan
        self.cfg = cfg
        self.states: dict[str, dict[str, Any]] = {}
        self.where: dict[str, str] = {}       # task -> the JSONPath of its emitted values
        self.static = {t.name: list(t.fan_out.static) for t in plan
                       if t.fan_out is not None and t.fan_out.source is None}

    def definition(self) -> dict[str, Any]:
        plan = self.plan
        for t in plan:
            if not _NAME.match(t.name):
                raise ExportError(f"Task '{t.name}' has a name Step Functions paths cannot address. Export the "
                                  "pipeline again from its source instead of editing the plan.")
            self._refuse(t)
        levels = task_levels(plan)
        names = [self._level_name(i, level) for i, level in enumerate(levels)]
        first = names[0] if names else "Done"
        head: dict[str, Any] = {"defaults": {p.name: p.default for p in _params(plan)}, "input.$": "$"}
        merged: dict[str, Any] = {"params.$": "States.JsonMerge($.defaults, $.input, false)", "emitted": {}}
        if self.static:
            head["static"] = self.static
            merged["static.$"] = "$.static"
        self.states["Parameters"] = {"Type": "Pass", "Comment": "the parameters' defaults",
                                     "Parameters": head, "Next": "Merge parameters"}
        self.states["Merge parameters"] = {"Type": "Pass", "Comment": "the execution's input over the defaults",
                                           "Parameters": merged, "Next": "Check parameters"}
        self._check_parameters(first)
        for i, level in enumerate(levels):
            nxt = names[i + 1] if i + 1 < len(levels) else "Done"
            if len(level) == 1:
                self.states.update(self._task_states(level[0], nxt, in_branch=False))
                self.where[level[0].name] = f"$.emitted.{level[0].name}"
            else:
                self._parallel(names[i], level, nxt)
        self.states["Done"] = {"Type": "Succeed"}
        comment = (f"Conveyor pipeline '{plan.pipeline}' ({plan.ref}, shape {plan.shape}). Input: "
                   + ", ".join(f"{p.name} ({p.type})" for p in _params(plan)) + ".")
        return {"Comment": comment, "StartAt": "Parameters", "States": self.states}

    def _refuse(self, t: Task) -> None:
        tasks = self.plan.tasks
        for g in t.gates:
            if tasks[g.decider].fan_out is not None:
                raise ExportError(f"Step '{t.name}': its condition is decided by the fanned-out step '{g.decider}', "
                                  "and a Map state's elements emit no one value. Add a join step that returns the "
                                  "value to compare, and use cv.when() on that.")
        if t.fan_out is not None and t.emits:
            raise ExportError(f"Step '{t.name}' is fanned out and emits {', '.join(e.name for e in t.emits)}; a Map "
                              "state's elements hand back no single value. Add a join step after it that decides.")
        if t.fan_out is not None and t.fan_out.source is not None:
            if tasks[t.fan_out.source].fan_out is not None:
                raise ExportError(f"Step '{t.name}' iterates over a list emitted by the fanned-out step "
                                  f"'{t.fan_out.source}'. Add a join step that returns the list, and map over it.")
        if self.cfg.launch_type == "FARGATE":
            if t.gpus:
                raise ExportError(f"Step '{t.name}' asks for {t.gpus} GPU(s), and Fargate tasks have none. Export "
                                  "with --option launch-type=EC2 for a cluster with GPU instances.")
            if t.instance_type:
                raise ExportError(f"Step '{t.name}' asks for instance type {t.instance_type}, and Fargate does not "
                                  "choose instances. Export with --option launch-type=EC2, or without "
                                  "--instance-type.")

    def _level_name(self, i: int, level: list[Task]) -> str:
        if len(level) > 1:
            return f"Parallel {i + 1}"
        return f"Gate {level[0].name}" if level[0].gates else level[0].name

    def _check_parameters(self, first: str) -> None:
        """A Choice that fails the execution when a parameter's value is not of its type."""
        rules: list[dict[str, Any]] = []
        fails: dict[str, dict[str, Any]] = {}
        for p in _params(self.plan):
            bad = _type_check(p)
            if bad is None:
                continue
            fail = f"Bad parameter {p.name}"
            rules.append({**bad, "Next": fail})
            fails[fail] = {"Type": "Fail", "Error": "Conveyor.BadParameter",
                           "Cause": f"Parameter '{p.name}' must be {_describe(p)}."}
        self.states["Check parameters"] = {"Type": "Choice", "Choices": rules, "Default": first}
        self.states.update(fails)

    def _parallel(self, name: str, level: list[Task], nxt: str) -> None:
        branches = []
        selector = {}
        for k, t in enumerate(level):
            states = self._task_states(t, None, in_branch=True)
            branches.append({"StartAt": next(iter(states)), "States": states})
            if t.emits:
                selector[f"{t.name}.$"] = f"$[{k}]"
                self.where[t.name] = f"$.emitted.{_slug(name)}.{t.name}"
        state: dict[str, Any] = {"Type": "Parallel", "Comment": "independent steps", "Branches": branches,
                                 "Next": nxt}
        if selector:
            state["ResultSelector"] = selector
            state["ResultPath"] = f"$.emitted.{_slug(name)}"
        else:
            state["ResultPath"] = None
        self.states[name] = state

    def _task_states(self, t: Task, nxt: str | None, *, in_branch: bool) -> dict[str, dict[str, Any]]:
        """The states of one task: its gate (a Choice and the Pass that stands in), then its task or Map."""
        states: dict[str, dict[str, Any]] = {}
        # in a branch the result is the branch's output; in sequence it goes under $.emitted
        result_path = None if in_branch else (f"$.emitted.{t.name}" if t.emits else None)
        end: dict[str, Any] = {"End": True} if nxt is None else {"Next": nxt}
        if t.gates:
            checks = [{"Variable": f"{self.where[g.decider]}.{g.output}", "BooleanEquals": True} for g in t.gates]
            rule = checks[0] if len(checks) == 1 else {"And": checks}
            states[f"Gate {t.name}"] = {"Type": "Choice", "Comment": "; ".join(g.describe for g in t.gates),
                                        "Choices": [{**rule, "Next": t.name}], "Default": f"Skip {t.name}"}
            skipped: dict[str, Any] = {e.name: (False if e.kind == "boolean" else []) for e in t.emits}
            skip: dict[str, Any] = {"Type": "Pass", "Comment": "a condition is false: what a skipped step emits",
                                    "Result": skipped, **end}
            if not in_branch:
                skip["ResultPath"] = result_path
            states[f"Skip {t.name}"] = skip
        if t.fan_out is None:
            state = self._run_task(t, map_index=None)
            if not in_branch:
                state["ResultPath"] = result_path
            states[t.name] = {**state, **end}
        else:
            states[t.name] = {**self._map(t, in_branch), **end}
        return states   # the first state (the Choice, when gated) is where the task starts

    def _map(self, t: Task, in_branch: bool) -> dict[str, Any]:
        fan = t.fan_out
        assert fan is not None
        items = f"$.static.{t.name}" if fan.source is None else f"{self.where[fan.source]}.{fan.output}"
        inner = f"{t.name} [element]"
        state: dict[str, Any] = {
            "Type": "Map", "Comment": f"one task per element of {fan.output or 'a list known at export'}",
            "ItemsPath": items,
            "ItemSelector": {"params.$": "$.params", "index.$": "$$.Map.Item.Value"},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": inner,
                              "States": {inner: {**self._run_task(t, map_index="$.index"), "End": True}}},
        }
        # the step's own max_parallel and the export's --option max-concurrency: the tighter one holds
        limits = [n for n in (self.cfg.max_concurrency, fan.max_parallel) if n]
        if limits:
            state["MaxConcurrency"] = min(limits)
        # a Map's elements emit nothing: keep the state (in sequence) or hand back {} (in a branch)
        if in_branch:
            state["OutputPath"] = None
        else:
            state["ResultPath"] = None
        return state

    def _run_task(self, t: Task, *, map_index: str | None) -> dict[str, Any]:
        """The ECS RunTask state of one task (one element of it, inside a Map)."""
        cfg = self.cfg
        placeholders = {f"\x00{p.name}\x00": f"$.params.{p.name}" for p in _params(self.plan)}
        jsons = {p.name for p in _params(self.plan) if p.type == "json"}
        argv = self.plan.command(
            t, run_id="\x00run\x00", params={p.name: f"\x00{p.name}\x00" for p in self.plan.params},
            map_index=None if map_index is None else "\x00index\x00",
            resume_from=f"\x00{RESUME_PARAM}\x00")
        paths = {**placeholders, "\x00run\x00": "$$.Execution.Name", "\x00index\x00": map_index or ""}
        # the task definition's entry point (sfn_callback) runs `python -m conveyor` with what follows
        command = [_intrinsic_arg(a, paths, jsons) for a in argv[3:]]   # past "python -m conveyor"
        env = [{"Name": TOKEN_ENV, "Value.$": "$$.Task.Token"},
               *({"Name": k, "Value": v} for k, v in sorted(self.plan.env.items()))]
        container: dict[str, Any] = {"Name": CONTAINER, "Command.$": f"States.Array({', '.join(command)})",
                                     "Environment": env}
        overrides: dict[str, Any] = {"ContainerOverrides": [container]}
        if t.cpus is not None or t.memory is not None:
            if cfg.launch_type == "FARGATE":
                cpu, mib = fargate_size(t.cpus, t.memory_bytes, t.name)
            else:
                cpu = cfg.cpu if t.cpus is None else max(128, math.ceil(t.cpus * 1024))
                mib = cfg.memory if t.memory_bytes is None else math.ceil(t.memory_bytes / 2**20)
            overrides["Cpu"], overrides["Memory"] = str(cpu), str(mib)
        if t.gpus:
            container["ResourceRequirements"] = [{"Type": "GPU", "Value": str(t.gpus)}]
        params: dict[str, Any] = {"Cluster": cfg.cluster, "TaskDefinition": cfg.name, "LaunchType": cfg.launch_type,
                                  "Overrides": overrides}
        if cfg.launch_type == "FARGATE":
            vpc: dict[str, Any] = {"Subnets": cfg.subnets, "AssignPublicIp": cfg.public_ip}
            if cfg.security_groups:
                vpc["SecurityGroups"] = cfg.security_groups
            params["NetworkConfiguration"] = {"AwsvpcConfiguration": vpc}
        if t.instance_type:
            params["PlacementConstraints"] = [{"Type": "memberOf",
                                               "Expression": f"attribute:ecs.instance-type == {t.instance_type}"}]
        state: dict[str, Any] = {"Type": "Task", "Comment": f"step {t.step}", "Resource": RUN_TASK,
                                 "Parameters": params}
        if t.deadline_s is not None:
            state["TimeoutSeconds"] = t.deadline_s
        state["Retry"] = retriers(t)
        return state


def retriers(t: Task) -> list[dict[str, Any]]:
    """The step's own failures are final (its attempts ran in the entry point); lost tasks are retried."""
    final: dict[str, Any] = {"ErrorEquals": [STEP_FAILED, USAGE_ERROR], "MaxAttempts": 0}
    if not t.retries:
        return [final]
    return [final, {"ErrorEquals": ["States.TaskFailed", "States.Timeout"], "MaxAttempts": t.retries,
                    "IntervalSeconds": max(1, math.ceil(t.backoff)), "BackoffRate": 2.0,
                    "MaxDelaySeconds": max(1, math.ceil(t.backoff_max))}]


def task_levels(plan: Plan) -> list[list[Task]]:
    """The tasks grouped by level: each after every task it waits for, decides by or iterates over."""
    level: dict[str, int] = {}

    def level_of(name: str) -> int:
        if name not in level:   # Plan.check has ruled out cycles
            level[name] = 1 + max((level_of(d) for d in _waits_for(plan.tasks[name])), default=-1)
        return level[name]

    groups: dict[int, list[Task]] = {}
    for t in plan:
        groups.setdefault(level_of(t.name), []).append(t)
    return [groups[k] for k in sorted(groups)]


def _waits_for(t: Task) -> list[str]:
    deps = [*t.upstream, *(g.decider for g in t.gates)]
    if t.fan_out is not None and t.fan_out.source is not None:
        deps.append(t.fan_out.source)
    return deps


# --- parameters ----------------------------------------------------------------------------------

def _params(plan: Plan) -> list[ParamSpec]:
    """The pipeline's parameters and the reserved resume parameter."""
    return [*plan.params, ParamSpec(RESUME_PARAM, "string", plan.resume_from)]


def defaults(plan: Plan) -> dict[str, Any]:
    """The execution input with every default: what ``start-execution --input`` takes."""
    return {p.name: p.default for p in _params(plan)}


_IS = {"string": "IsString", "integer": "IsNumeric", "number": "IsNumeric", "boolean": "IsBoolean"}


def _type_check(p: ParamSpec) -> dict[str, Any] | None:
    """A Choice rule that matches a value of the wrong type or outside the choices; None for JSON."""
    test = _IS.get(p.type)
    if test is None:
        return None
    var = f"$.params.{p.name}"
    wrong: dict[str, Any] = {"Not": {"Variable": var, test: True}}
    if not p.choices or p.type == "boolean":
        return wrong
    op = "StringEquals" if p.type == "string" else "NumericEquals"
    allowed = [{"Variable": var, op: c} for c in p.choices]
    one_of = allowed[0] if len(allowed) == 1 else {"Or": allowed}
    return {"Or": [wrong, {"Not": one_of}]}


def _describe(p: ParamSpec) -> str:
    kind = {"string": "a string", "integer": "an integer (a JSON number)", "number": "a JSON number",
            "boolean": "true or false"}[p.type]
    return kind + (f", one of {', '.join(map(str, p.choices))}" if p.choices else "")


# --- intrinsic functions -------------------------------------------------------------------------

def _intrinsic_arg(text: str, paths: Mapping[str, str], jsons: set[str]) -> str:
    """One argv element as an intrinsic function argument: a literal, a path or ``States.Format``."""
    found = re.split(r"(\x00[^\x00]*\x00)", text)
    holes = found[1::2]
    if not holes:
        return _literal(text)

    def path_of(hole: str) -> str:
        name = hole.strip("\x00")
        path = paths[hole]
        return f"States.JsonToString({path})" if name in jsons else path

    if len(holes) == 1 and found[0] == found[2] == "" and holes[0].strip("\x00") not in jsons:
        if holes[0] in ("\x00run\x00", f"\x00{RESUME_PARAM}\x00"):
            return paths[holes[0]]   # strings already
    template = "".join(_escape(part) if i % 2 == 0 else "{}" for i, part in enumerate(found))
    return f"States.Format('{template}', {', '.join(path_of(h) for h in holes)})"


def _escape(text: str) -> str:
    """A literal inside an intrinsic's quoted string: ', {, } and \\ are escaped with a backslash."""
    return re.sub(r"([\\'{}])", r"\\\1", text)


def _literal(text: str) -> str:
    if "\\" in text:
        # the spec escapes it as \\, which asl-validator rejects: no definition that one linter refuses
        raise ExportError(f"The task command holds a backslash ({text!r}), which Step Functions' intrinsic functions "
                          "do not carry reliably. Use forward slashes in the pipeline reference and project folder.")
    return f"'{_escape(text)}'"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).lower()


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2) + "\n"
