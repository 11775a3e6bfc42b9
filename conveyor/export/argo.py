"""Argo Workflows: a plan as one Workflow (or WorkflowTemplate) whose entry template is a DAG.

Every task is a DAG task running its own container template: the image, ``conveyor step exec``
as the container's command and arguments, the plan's environment, resources and deadline. The
YAML is written from the plan directly (no SDK is needed to export); hera's models are what the
tests load it into.

How the plan's constructs map (docs/portability.md, "Argo Workflows", says the same for users):

- dependencies are ``depends`` expressions, never plain ``dependencies``: under ``dependencies``
  Argo starts a task whose upstream was Skipped. ``depends: "a.Succeeded"`` leaves the task
  Omitted instead, as a local run skips what follows a skipped step. Only a fan-out upstream also
  accepts ``Skipped``: Argo skips a ``withParam`` over an empty list, after which the join still
  runs (on an empty list), as locally.
- a gate is a ``when`` comparing the decider's output parameter with ``true``; a task carries the
  ``when`` of every gate it is under (the plan's gates include the inherited ones). Because every
  upstream must have succeeded first, each output a ``when`` names exists when Argo evaluates it.
- a fan-out is ``withParam`` over the source's ``fanout_<node>`` output (``withItems`` for a static
  list); ``{{item}}`` reaches the element's template as its ``map-index`` input.
- retries are a ``retryStrategy`` with ``retryPolicy: OnError``: the entry point already retries
  the step's own failures (and fails at once when started again after failing for good), so
  Argo's retries are for what only Argo sees: a lost node, an evicted or deleted pod.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions, build_commands
from conveyor.export.kubernetes import INSTANCE_TYPE_LABEL, resources
from conveyor.export.plan import RESUME_PARAM, Plan, Task
from conveyor.export.yaml_text import to_yaml

EMIT_DIR = "/tmp/conveyor/emit"          # where the entry point writes the values a task hands to Argo
MAP_INDEX = "map-index"                  # the input parameter that carries {{item}} into a fan-out's template
MAX_NAME = 40                            # Argo adds the workflow's name and a hash to make pod names (63 at most)
KINDS = ("Workflow", "WorkflowTemplate")
RUN_IDS = {"uid": "{{workflow.uid}}", "name": "{{workflow.name}}"}
# words of the expression language Argo evaluates `depends` in: a task named so would not parse there
EXPR_WORDS = {"and", "or", "not", "in", "matches", "contains", "true", "false", "nil", "let", "if", "else"}


class ArgoTarget:
    """Argo Workflows: ``argo submit workflow.yaml`` (or a WorkflowTemplate with ``kind=WorkflowTemplate``).

    Options: ``kind`` (Workflow | WorkflowTemplate), ``namespace``, ``service_account`` (the pods'
    service account), ``run_id`` (``uid``, the default, or ``name``: what ``--run-id`` gets),
    ``secrets`` (Kubernetes Secrets, comma-separated, whose keys become every container's
    environment: where ``CONVEYOR_METADATA_URL`` with its password and cloud credentials belong).
    """

    name: ClassVar[str] = "argo"
    extra: ClassVar[str] = "argo"
    option_names: ClassVar[tuple[str, ...]] = ("kind", "namespace", "service_account", "run_id", "secrets")

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        """The Workflow (or WorkflowTemplate) as YAML text, under ``workflow.yaml``."""
        plan.check()
        return {_file_name(_kind(options)): to_yaml(manifest(plan, options))}

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """Build and push the image, then submit (or register the template and submit from it)."""
        kind = _kind(options)
        path = next(f for f in files if f.name == _file_name(kind))
        ns = f"-n {options.get('namespace')} " if options.get("namespace") else ""
        commands = build_commands(plan, path.parent)
        if kind == "WorkflowTemplate":
            return [*commands, f"argo template create {ns}{path}",
                    f"argo submit {ns}--from workflowtemplate/{dns_name(plan.pipeline)} --watch"]
        return [*commands, f"argo submit {ns}{path} --watch"]


def _kind(options: ExportOptions) -> str:
    kind = options.get("kind") or "Workflow"
    if kind not in KINDS:
        raise ExportError(f"Argo option kind={kind!r} is not one this export writes. Use kind=Workflow (the default) "
                          "or kind=WorkflowTemplate.")
    return kind


def _file_name(kind: str) -> str:
    return "workflowtemplate.yaml" if kind == "WorkflowTemplate" else "workflow.yaml"


# --- the manifest --------------------------------------------------------------------------------

def manifest(plan: Plan, options: ExportOptions) -> dict[str, Any]:
    """The Workflow or WorkflowTemplate as plain data (what ``to_yaml`` writes)."""
    kind = _kind(options)
    run_id = RUN_IDS.get(options.get("run_id") or "uid")
    if run_id is None:
        raise ExportError(f"Argo option run_id={options.get('run_id')!r} is unknown. Use run_id=uid (the default: "
                          "the workflow's unique id) or run_id=name (its generated name).")
    names = task_names(plan)
    entry = "main"
    while entry in names.values():     # a step may be called main: the DAG template takes another name
        entry += "-dag"
    pipeline = dns_name(plan.pipeline)
    metadata: dict[str, Any] = {"name": pipeline} if kind == "WorkflowTemplate" else {"generateName": f"{pipeline}-"}
    if options.get("namespace"):
        metadata["namespace"] = k8s_name(options.get("namespace") or "", "namespace")
    metadata["labels"] = {"conveyor.dev/pipeline": pipeline}
    metadata["annotations"] = {"conveyor.dev/pipeline-ref": plan.ref, "conveyor.dev/shape": plan.shape,
                               "conveyor.dev/parameter-types": json.dumps({p.name: p.type for p in plan.params},
                                                                          separators=(",", ":"))}
    spec: dict[str, Any] = {"entrypoint": entry, "arguments": {"parameters": parameters(plan)}}
    if options.get("service_account"):
        spec["serviceAccountName"] = k8s_name(options.get("service_account") or "", "service_account")
    limits = [t.fan_out.max_parallel for t in plan if t.fan_out is not None and t.fan_out.max_parallel]
    if limits:
        # Argo limits parallel pods per workflow or per template invocation, not per looped task: the
        # tightest .map(max_parallel=N) caps the whole workflow, so no fan-out runs more than asked
        spec["parallelism"] = min(limits)
    dag = {"name": entry, "dag": {"tasks": [dag_task(plan, t, names) for t in plan]}}
    secrets = [k8s_name(s, "secrets") for s in (options.get("secrets") or "").split(",") if s.strip()]
    spec["templates"] = [dag, *(container_template(plan, t, names[t.name], run_id, secrets) for t in plan)]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def parameters(plan: Plan) -> list[dict[str, Any]]:
    """The workflow's arguments: every pipeline parameter as text with its type, and the resume id.

    Argo's parameters are strings; the type goes in the description (and an annotation), choices
    in ``enum``, and the entry point coerces each text to the pipeline's type as ``conveyor run -p`` does.
    """
    out: list[dict[str, Any]] = []
    for p in plan.params:
        param: dict[str, Any] = {"name": p.name, "value": p.text()}
        if p.choices:
            param["enum"] = [p.text(c) for c in p.choices]
        param["description"] = f"{p.type} (the entry point coerces the text to it)"
        out.append(param)
    out.append({"name": RESUME_PARAM, "value": plan.resume_from,
                "description": "a run id whose finished steps this run reuses; empty: none"})
    return out


def dag_task(plan: Plan, task: Task, names: Mapping[str, str]) -> dict[str, Any]:
    """The task in the DAG: its template, what it waits for, its gates and its fan-out."""
    out: dict[str, Any] = {"name": names[task.name], "template": names[task.name]}
    if task.upstream:
        out["depends"] = " && ".join(_upstream_done(plan.tasks[u], names) for u in task.upstream)
    if task.gates:
        out["when"] = " && ".join(f"{{{{tasks.{names[g.decider]}.outputs.parameters.{g.output}}}}} == true"
                                  for g in task.gates)
    fan = task.fan_out
    if fan is not None:
        if task.emits:
            emitted = ", ".join(e.name for e in task.emits)
            raise ExportError(f"Step '{task.name}' is fanned out and also emits {emitted}; "
                              "Argo gathers a fan-out's outputs into one list, which no gate or fan-out can read. "
                              "Add a join step after the fan-out and decide on its output.")
        if fan.source is not None:
            out["withParam"] = f"{{{{tasks.{names[fan.source]}.outputs.parameters.{fan.output}}}}}"
        else:
            out["withItems"] = list(fan.static or ())
        out["arguments"] = {"parameters": [{"name": MAP_INDEX, "value": "{{item}}"}]}
    return out


def _upstream_done(up: Task, names: Mapping[str, str]) -> str:
    # Skipped is accepted only from a fan-out: Argo skips a withParam over an empty list, and the
    # join must still run; a fan-out skipped by its gates skips the join through the same gates.
    name = names[up.name]
    return f"({name}.Succeeded || {name}.Skipped)" if up.fan_out is not None else f"{name}.Succeeded"


def container_template(plan: Plan, task: Task, name: str, run_id: str,
                       secrets: Sequence[str] = ()) -> dict[str, Any]:
    """The task's template: the entry point in the image, with the task's resources, retries and deadline."""
    argv = plan.command(
        task, run_id=run_id, params={p.name: f"{{{{workflow.parameters.{p.name}}}}}" for p in plan.params},
        map_index=f"{{{{inputs.parameters.{MAP_INDEX}}}}}" if task.fan_out is not None else None,
        resume_from=f"{{{{workflow.parameters.{RESUME_PARAM}}}}}", emit_dir=EMIT_DIR if task.emits else None)
    out: dict[str, Any] = {"name": name}
    if task.fan_out is not None:
        out["inputs"] = {"parameters": [{"name": MAP_INDEX}]}
    # Argo names a template's container "main" itself; Kubernetes' schema requires the name
    container: dict[str, Any] = {"name": "main", "image": plan.image, "command": argv[:1], "args": argv[1:]}
    if plan.env:
        container["env"] = [{"name": k, "value": v} for k, v in plan.env.items()]
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    res = resources(task)
    if res:
        container["resources"] = res
    out["container"] = container
    if task.emits:
        out["outputs"] = {"parameters": [{"name": e.name, "valueFrom": {"path": f"{EMIT_DIR}/{e.name}"}}
                                         for e in task.emits]}
    if task.retries:
        out["retryStrategy"] = {"limit": task.retries, "retryPolicy": "OnError",
                                "backoff": {"duration": duration(task.backoff), "factor": 2,
                                            "cap": duration(task.backoff_max)}}
    if task.deadline_s is not None:
        out["activeDeadlineSeconds"] = task.deadline_s
    if task.instance_type:
        out["nodeSelector"] = {INSTANCE_TYPE_LABEL: task.instance_type}
    return out


def duration(seconds: float) -> str:
    """Seconds as an Argo duration (``"2s"``, ``"10ms"``)."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


# --- names ---------------------------------------------------------------------------------------

def dns_name(text: str) -> str:
    """``text`` as a DNS-1123 label Argo accepts for tasks and templates (lower case, digits, ``-``)."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "task"
    if not name[0].isalpha():      # a name must not read as a number in a depends expression
        name = f"t-{name}"
    if name in EXPR_WORDS:
        name = f"{name}-step"
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 9].rstrip('-')}-{_digest(text)}"
    return name


def k8s_name(text: str, option: str) -> str:
    """A Kubernetes object's name given in ``option`` (a namespace, Secret...), refused where Kubernetes would."""
    name = text.strip()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
        raise ExportError(f"Argo option {option}: {name!r} is not a Kubernetes object name (lower-case letters, "
                          f"digits, '-' and '.'), e.g. {option}=conveyor-ml. Secrets are comma-separated: "
                          "secrets=conveyor-db,aws-creds.")
    return name


def task_names(plan: Plan) -> dict[str, str]:
    """Each task's Argo name: ``train_2`` -> ``train-2``; names that map alike get their own digest.

    A digest depends only on the task's own name, so adding or removing a task never renames another.
    """
    mapped = {t.name: dns_name(t.name) for t in plan}
    clashing = {m for m in mapped.values() if list(mapped.values()).count(m) > 1}
    names = {n: (f"{m[:MAX_NAME - 9].rstrip('-')}-{_digest(n)}" if m in clashing else m) for n, m in mapped.items()}
    seen: dict[str, str] = {}
    for task, name in names.items():
        if name in seen:
            raise ExportError(f"Tasks '{seen[name]}' and '{task}' both become '{name}' in Argo, which allows only "
                              "lower-case letters, digits and '-' in names. Rename one of the steps.")
        seen[name] = task
    return names


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# --- YAML ----------------------------------------------------------------------------------------
