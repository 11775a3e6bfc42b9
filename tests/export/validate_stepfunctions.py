"""Step Functions: the ASL passes statelint and asl-validator, and its ECS calls fit botocore's ECS model.

- ``statelint``: the Python port on PyPI (``statelint``, based on awslabs/statelint), in its own venv.
  The original is a Ruby gem, and RubyGems is not a registry this machine reaches (Debian packages
  Ruby, not the gem nor its ``j2119`` dependency).
- ``asl-validator`` from npm, under ``.cache/npm/asl-validator`` (scripts/system-packages.sh
  installs it; so does the first use here).
- every Task state's ``Parameters`` validate against the ``RunTask`` input of the ECS model that
  botocore ships, and the task definition against ``RegisterTaskDefinition``'s.

Then what they parsed is checked against the plan: a task or Map state per task, a Choice per
gated task on its deciders' booleans, each Map over its source's list, each state after the
states of what it waits for, retries and timeouts as the plan says.
"""

from __future__ import annotations

import fcntl
import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from conveyor.export.base import ExportResult
from conveyor.export.plan import Plan
from conveyor.export.stepfunctions import RUN_TASK
from tests.export.venvs import ROOT, target_venv

ASL_VALIDATOR_VERSION = "4.0.0"    # keep in step with scripts/system-packages.sh
ASL_VALIDATOR_PREFIX = ROOT / ".cache" / "npm" / "asl-validator"
STATELINT = ["statelint==3.1.0"]


def asl_validator_command() -> Path:
    """The ``asl-validator`` executable, installed from npm on first use."""
    from tests.npm import npm_package

    exe = ASL_VALIDATOR_PREFIX / "node_modules" / ".bin" / "asl-validator"
    if exe.exists():   # scripts/system-packages.sh installs it for make test
        return exe
    return npm_package(ASL_VALIDATOR_PREFIX, f"asl-validator@{ASL_VALIDATOR_VERSION}") / "node_modules" / ".bin" \
        / "asl-validator"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("asl-validator needs Node.js and npm; run scripts/system-packages.sh (make test does).")
    ASL_VALIDATOR_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(ASL_VALIDATOR_PREFIX / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            subprocess.run([npm, "install", "--prefix", str(ASL_VALIDATOR_PREFIX), "--no-audit", "--no-fund",
                            "--loglevel=error", f"asl-validator@{ASL_VALIDATOR_VERSION}"], check=True,
                           capture_output=True, timeout=600)
    return exe


def statelint_command() -> Path:
    return target_venv("statelint", STATELINT) / "bin" / "statelint"


def lint(path: Path) -> None:
    """Both linters accept the file, or AssertionError with what they said."""
    for cmd in ([str(asl_validator_command()), "--json-path", str(path)], [str(statelint_command()), str(path)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{Path(cmd[0]).name} rejected {path}:\n{done.stdout}\n{done.stderr}"


def validate(result: ExportResult) -> None:
    files = {f.name: f for f in result.files}
    asl = files["state-machine.asl.json"]
    lint(asl)
    machine = json.loads(asl.read_text())
    check_plan(machine, result.plan)
    for name, state in walk(machine):
        if state["Type"] == "Task":
            check_run_task(name, state["Parameters"])
    check_task_definition(json.loads(files["task-definition.json"].read_text()))
    for policy in ("state-machine-policy.json", "task-role-policy.json"):
        doc = json.loads(files[policy].read_text())
        assert doc["Version"] == "2012-10-17" and doc["Statement"], policy
    assert json.loads(files["input.json"].read_text()) == {
        **{p.name: p.default for p in result.plan.params}, "conveyor_resume_from": result.plan.resume_from}


# --- what the linters parsed, against the plan ----------------------------------------------------

def walk(machine: dict[str, Any], depth: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """Every state, also those in Parallel branches and Map processors (depth-first)."""
    found = []
    for name, state in machine["States"].items():
        found.append((name, state))
        for branch in state.get("Branches", []):
            found += walk(branch, depth + 1)
        if "ItemProcessor" in state:
            found += walk(state["ItemProcessor"], depth + 1)
    return found


def top_level_order(machine: dict[str, Any]) -> dict[str, int]:
    """Each state's longest distance from the start; a state inside a Parallel takes the Parallel's."""
    states = machine["States"]

    def successors(state: dict[str, Any]) -> list[str]:
        nxt = [r["Next"] for r in state.get("Choices", [])] + [state.get("Default"), state.get("Next")]
        return [n for n in nxt if n]

    order: dict[str, int] = {}
    frontier = [(machine["StartAt"], 0)]
    while frontier:   # the machine is acyclic: relaxing distances upward ends
        name, pos = frontier.pop()
        if order.get(name, -1) >= pos:
            continue
        order[name] = pos
        frontier += [(n, pos + 1) for n in successors(states[name])]
    for name, state in states.items():
        for branch in state.get("Branches", []):
            for inner, _ in walk(branch):
                order[inner] = order[name]
    return order


def command_of(state: dict[str, Any]) -> str:
    return state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]


def check_plan(machine: dict[str, Any], plan: Plan) -> None:
    states = dict(walk(machine))
    order = top_level_order(machine)
    where: dict[str, str] = {}
    for t in plan:
        assert t.name in states, f"no state for task {t.name}: {sorted(states)}"
        state = states[t.name]
        if t.fan_out is None:
            task = state
            assert task["Type"] == "Task", (t.name, task["Type"])
        else:
            assert state["Type"] == "Map", (t.name, state["Type"])
            if t.fan_out.source is None:
                assert state["ItemsPath"] == f"$.static.{t.name}"
                start = states["Parameters"]["Parameters"]["static"][t.name]
                assert start == list(t.fan_out.static or ()), start
            else:
                assert state["ItemsPath"] == f"{where[t.fan_out.source]}.{t.fan_out.output}", state["ItemsPath"]
            assert state["ItemSelector"]["index.$"] == "$$.Map.Item.Value"
            task = state["ItemProcessor"]["States"][f"{t.name} [element]"]
            assert "'--map-index', States.Format('{}', $.index)" in command_of(task)
        assert task["Resource"] == RUN_TASK
        assert f"'--node', '{t.name}'" in command_of(task) and "'--run-id', $$.Execution.Name" in command_of(task)
        assert "'--resume-from', $.params.conveyor_resume_from" in command_of(task)
        retry = {tuple(r["ErrorEquals"]): r["MaxAttempts"] for r in task["Retry"]}
        assert retry.get(("States.TaskFailed", "States.Timeout"), 0) == t.retries, (t.name, retry)
        assert task.get("TimeoutSeconds") == t.deadline_s, (t.name, task.get("TimeoutSeconds"))
        if t.gates:
            gate = states[f"Gate {t.name}"]
            rule = gate["Choices"][0]
            checks = rule.get("And", [rule])
            wanted = {f"{where[g.decider]}.{g.output}" for g in t.gates}
            assert {c["Variable"] for c in checks} == wanted and all(c["BooleanEquals"] is True for c in checks)
            assert rule["Next"] == t.name and gate["Default"] == f"Skip {t.name}"
        for up in t.upstream:
            assert order[t.name] > order[up], f"{t.name} is not after {up}: {order}"
        where[t.name] = _emitted_path(machine, t.name)


def _emitted_path(machine: dict[str, Any], name: str) -> str:
    """Where a task's emitted values land: under its own name, or under its Parallel state's result."""
    for state_name, state in machine["States"].items():
        if state_name == name:
            return f"$.emitted.{name}"
        selector = state.get("ResultSelector", {})
        if f"{name}.$" in selector:
            return f"{state['ResultPath']}.{name}"
    return f"$.emitted.{name}"   # a task that emits nothing


# --- botocore's ECS model ------------------------------------------------------------------------

@functools.cache
def _ecs_shape(operation: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("ecs").operation_model(operation).input_shape


def check_run_task(name: str, parameters: dict[str, Any]) -> None:
    """A Task state's parameters, as Step Functions hands them to ECS, are a valid ``RunTask`` request."""
    from botocore.validate import ParamValidator

    shape = _ecs_shape("RunTask")
    request = _to_boto(parameters, shape)
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), f"state {name!r}: RunTask parameters do not fit the ECS model:\n" \
                                    f"{report.generate_report()}"


def check_task_definition(doc: dict[str, Any]) -> None:
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(doc, _ecs_shape("RegisterTaskDefinition"))
    assert not report.has_errors(), report.generate_report()


def _to_boto(value: Any, shape: Any) -> Any:
    """Step Functions' PascalCase keys to the model's member names; a ``.$`` key gets a sample of its type."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = {m.lower(): m for m in shape.members}
        out = {}
        for key, v in value.items():
            dynamic = key.endswith(".$")
            member = members.get(key.removesuffix(".$").lower())
            if member is None:
                out[key] = v   # left as it is: the validator reports the unknown key
                continue
            sub = shape.members[member]
            out[member] = _sample(sub) if dynamic else _to_boto(v, sub)
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [_to_boto(v, shape.member) for v in value]
    return value


def _sample(shape: Any) -> Any:
    if shape.type_name == "list":
        return [_sample(shape.member)]
    return {"integer": 1, "boolean": True}.get(shape.type_name, "x")
