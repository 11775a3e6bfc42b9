"""A small interpreter of an exported Argo Workflow, for tests: our own reading of Argo's rules, not Argo.

No Kubernetes is reachable here, so this walks the Workflow's DAG the way Argo's controller does
(workflow/controller/dag.go) for the subset the export writes, and runs each container's command
and arguments as a local process instead of a pod:

- a task starts when every task its ``depends`` names has finished; ``depends`` is evaluated over
  the upstream phases (Succeeded, Failed, Errored, Skipped, Omitted); false leaves it Omitted;
- then ``{{tasks.X.outputs.parameters.Y}}`` is resolved from ancestors only (an unresolved one is
  an error, as in Argo); ``withParam``/``withItems`` expand the task, one element per item, with
  ``{{item}}`` substituted; each element's ``when`` decides Skipped or run;
- a task group succeeds when no element failed (an empty one too), and fails otherwise;
- a container runs with its template's env, ``{{inputs.parameters.*}}``, ``{{workflow.*}}``
  substituted; each pod has its own filesystem, so the folders its output parameters are read
  from are moved into a fresh one; an output file that is missing is an error;
- ``retryStrategy``: a failed process (non-zero exit) is retried under ``Always`` and
  ``OnFailure``; ``OnError`` retries only errors, which locally are a process that could not
  start or was stopped by ``activeDeadlineSeconds``;
- the workflow fails when any node failed or errored.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_REF = re.compile(r"\{\{tasks\.([^.}]+)\.outputs\.parameters\.([^}]+)\}\}")
OPERAND = re.compile(r"([A-Za-z0-9][-A-Za-z0-9]*)\.(Succeeded|Failed|Errored|Skipped|Omitted|Daemoned)")
DONE = {"Succeeded", "Failed", "Error", "Skipped", "Omitted"}


@dataclass
class Node:
    """One task (or one element of a fanned-out task) as Argo's status would show it."""

    name: str
    phase: str
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    logs: str = ""


@dataclass
class WorkflowRun:
    """What the interpreter did: the workflow's phase, every node, and the uid it ran under."""

    uid: str
    name: str
    phase: str = "Running"
    nodes: dict[str, Node] = field(default_factory=dict)      # task name, or "task(i:item)" for elements
    order: list[str] = field(default_factory=list)            # tasks in the order they were decided

    def phase_of(self, task: str) -> str:
        return self.nodes[task].phase


def run_workflow(doc: Mapping[str, Any], *, parameters: Mapping[str, str] | None = None, env: Mapping[str, str],
                 cwd: Path, uid: str | None = None, timeout: float = 300) -> WorkflowRun:
    """Run the Workflow ``doc`` here: its DAG in Argo's order, its containers as local processes.

    ``parameters`` override the workflow's arguments as ``argo submit -p`` does; ``env`` is the
    base environment of every process (the container's own ``env`` is added to it).
    """
    spec = doc["spec"]
    uid = uid or str(uuid.uuid4())
    run = WorkflowRun(uid=uid, name=f"{doc['metadata'].get('generateName', 'wf-')}{uid[:5]}")
    declared = {p["name"]: p.get("value", "") for p in spec.get("arguments", {}).get("parameters", [])}
    unknown = set(parameters or {}) - set(declared)
    assert not unknown, f"parameters {sorted(unknown)} are not the workflow's"
    glob = {f"workflow.parameters.{k}": v for k, v in {**declared, **(parameters or {})}.items()}
    glob |= {"workflow.uid": run.uid, "workflow.name": run.name}
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = {t["name"]: t for t in templates[spec["entrypoint"]]["dag"]["tasks"]}
    upstream = {n: sorted({m.group(1) for m in OPERAND.finditer(t.get("depends", ""))}) for n, t in tasks.items()}
    pending = list(tasks)
    while pending:
        ready = [n for n in pending if all(run.nodes.get(u) and run.nodes[u].phase in DONE for u in upstream[n])]
        assert ready, f"no task can start: {pending} wait in a cycle"
        name = ready[0]                      # one at a time: the order among ready tasks does not matter here
        pending.remove(name)
        run.order.append(name)
        _execute(run, name, tasks[name], templates, glob, _ancestors(name, upstream), env, cwd, timeout)
    failed = [n for n in run.nodes.values() if n.phase in ("Failed", "Error")]
    run.phase = "Failed" if failed else "Succeeded"
    return run


def _execute(run: WorkflowRun, name: str, task: Mapping[str, Any], templates: Mapping[str, Any],
             glob: Mapping[str, str], ancestors: set[str], env: Mapping[str, str], cwd: Path, timeout: float) -> None:
    if task.get("depends") and not _depends(task["depends"], run):
        run.nodes[name] = Node(name, "Omitted", "omitted: depends condition not met")
        return
    try:
        when = _resolve(task.get("when", ""), run, ancestors)
        items: list[Any] | None = None
        if "withParam" in task:
            items = json.loads(_resolve(task["withParam"], run, ancestors))
            assert isinstance(items, list), f"withParam of {name} is not a JSON list"
        elif "withItems" in task:
            items = list(task["withItems"])
    except (KeyError, ValueError, AssertionError) as exc:
        run.nodes[name] = Node(name, "Error", str(exc))
        return
    template = templates[task["template"]]
    arguments = {p["name"]: p["value"] for p in task.get("arguments", {}).get("parameters", [])}
    if items is None:
        run.nodes[name] = _element(name, when, template, arguments, glob, env, cwd, timeout)
        return
    phase = "Succeeded"
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else json.dumps(item)
        args = {k: v.replace("{{item}}", text) for k, v in arguments.items()}
        child = _element(f"{name}({i}:{text})", when.replace("{{item}}", text), template, args, glob, env, cwd, timeout)
        run.nodes[child.name] = child
        if child.phase in ("Failed", "Error"):
            phase = child.phase
    run.nodes[name] = Node(name, phase, f"{len(items)} elements")


def _element(name: str, when: str, template: Mapping[str, Any], arguments: Mapping[str, str],
             glob: Mapping[str, str], env: Mapping[str, str], cwd: Path, timeout: float) -> Node:
    if when and not _when(when):
        return Node(name, "Skipped", f"when '{when}' evaluated false")
    inputs = {f"inputs.parameters.{p['name']}": arguments[p["name"]]
              for p in template.get("inputs", {}).get("parameters", [])}
    values = {**glob, **inputs}
    container = template["container"]
    argv = [_substitute(a, values) for a in [*container.get("command", []), *container.get("args", [])]]
    strategy = template.get("retryStrategy") or {}
    limit = int(strategy.get("limit", 0))
    policy = strategy.get("retryPolicy", "OnFailure")
    deadline = float(template.get("activeDeadlineSeconds", timeout))
    node = Node(name, "Running")
    while True:
        node.attempts += 1
        with tempfile.TemporaryDirectory(prefix="argo-pod-") as pod_tmp:
            phase, logs, outputs = _pod(argv, template, container, pod_tmp, env, cwd, min(deadline, timeout))
        node.logs += logs
        node.outputs = outputs
        retry = (phase == "Failed" and policy in ("Always", "OnFailure")) or (
            phase == "Error" and policy in ("Always", "OnError", "OnTransientError"))
        if phase == "Succeeded" or not retry or node.attempts > limit:
            node.phase = phase
            return node


def _pod(argv: list[str], template: Mapping[str, Any], container: Mapping[str, Any], pod_tmp: str,
         env: Mapping[str, str], cwd: Path, deadline: float) -> tuple[str, str, dict[str, str]]:
    """One pod: the process, with the folders its outputs are read from made its own; phase, logs, outputs."""
    folders = {str(Path(p["valueFrom"]["path"]).parent) for p in template.get("outputs", {}).get("parameters", [])}

    def own_tmp(text: str) -> str:
        # each pod has its own filesystem: two tasks writing /tmp/conveyor/emit never see each other's files
        for folder in folders:
            if text == folder or text.startswith(folder + "/"):
                return pod_tmp + text
        return text

    argv = [own_tmp(a) for a in argv]
    full_env = {**env, **{e["name"]: e["value"] for e in container.get("env", [])}}
    try:
        done = subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=deadline)
    except subprocess.TimeoutExpired as exc:
        return "Error", f"{exc.stdout or ''}{exc.stderr or ''}\nactiveDeadlineSeconds exceeded", {}
    except OSError as exc:
        return "Error", str(exc), {}
    logs = done.stdout + done.stderr
    if done.returncode != 0:
        return "Failed", logs, {}
    outputs = {}
    for p in template.get("outputs", {}).get("parameters", []):
        path = Path(own_tmp(p["valueFrom"]["path"]))
        if not path.exists():
            return "Error", f"{logs}\noutput parameter {p['name']}: {p['valueFrom']['path']} does not exist", {}
        outputs[p["name"]] = path.read_text()      # as written: "true\n" would not equal true
    return "Succeeded", logs, outputs


def _depends(expression: str, run: WorkflowRun) -> bool:
    def operand(m: re.Match[str]) -> str:
        node = run.nodes[m.group(1)]
        result = {"Error": "Errored"}.get(node.phase, node.phase)
        return "True" if result == m.group(2) else "False"

    text = OPERAND.sub(operand, expression).replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    words = set(re.findall(r"[A-Za-z]+", text))
    assert words <= {"True", "False", "and", "or", "not"} and not re.sub(r"[\s()A-Za-z]", "", text), expression
    return bool(eval(text, {"__builtins__": {}}))     # only True/False/and/or/not/parentheses remain


def _resolve(text: str, run: WorkflowRun, ancestors: set[str]) -> str:
    def one(m: re.Match[str]) -> str:
        task, output = m.groups()
        if task not in ancestors:
            raise KeyError(f"{{{{tasks.{task}...}}}}: {task} is not an ancestor")
        node = run.nodes[task]
        if output not in node.outputs:
            raise KeyError(f"Unable to resolve: {{{{tasks.{task}.outputs.parameters.{output}}}}} ({task} is "
                           f"{node.phase})")
        return node.outputs[output]

    return TASK_REF.sub(one, text)


def _when(expression: str) -> bool:
    # the export writes only "<value> == true" joined by &&
    terms = [t.strip() for t in expression.split("&&")]
    out = True
    for term in terms:
        left, op, right = term.partition("==")
        assert op, f"when term {term!r} is not a comparison this interpreter knows"
        out = out and left.strip() == right.strip()
    return out


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        key = m.group(1).strip()
        assert key in values, f"{{{{{key}}}}} has no value"
        return values[key]

    return re.sub(r"\{\{([^}]+)\}\}", one, text)


def _ancestors(name: str, upstream: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(upstream[name])
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(upstream[n])
    return seen


def local_env(**extra: str) -> dict[str, str]:
    """A pod-like base environment: this machine's PATH and HOME, nothing of Conveyor's own settings."""
    return {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}, **extra}
