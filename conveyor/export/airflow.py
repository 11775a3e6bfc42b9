"""Apache Airflow: a plan compiled into one DAG file (Python text, written directly from the plan).

The DAG file imports Airflow only, never Conveyor. Every step is one task that runs Conveyor's entry
point (``python -m conveyor step exec``); the export option ``operator`` picks how:

- ``kubernetes`` (the default): a ``KubernetesPodOperator`` runs the plan's image with the step's
  CPU, memory and GPU as the container's requests and limits, its instance type as a node
  selector; what the entry point emits reaches XCom through ``/airflow/xcom/return.json``. This is
  the shape Cloud Composer and MWAA run.
- ``local``: a Python task runs the entry point as a subprocess of the Airflow worker itself with
  the plan's interpreter and working directory (``--python``, ``--workdir`` at export); it returns
  what was emitted as its XCom. This is the shape ``dag.test()`` runs.

Both shapes share the graph: task dependencies; DAG params typed with JSON-schema types and the
exported defaults (and ``conveyor_resume_from``); a condition is a ``@task.short_circuit`` task
reading the decider's emitted boolean, upstream of every task under that condition, so that a
false condition skips those tasks and everything after them while the other tasks run, exactly
as a local run skips; a fan-out is dynamic task mapping: a small task turns the source's emitted
list of element indices into one argument list per element, and the step's task is ``.expand``-ed
over it. Retries, backoff and the task's deadline become ``retries``, ``retry_delay``
(exponential, capped) and ``execution_timeout``; Airflow's ``{{ run_id }}`` is the Conveyor run id.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions, build_commands
from conveyor.export.kubernetes import INSTANCE_TYPE_LABEL, resources
from conveyor.export.plan import RESUME_PARAM, ParamSpec, Plan, Task

OPERATORS = ("kubernetes", "local")
DEFAULT_OPERATOR = "kubernetes"
XCOM_FILE = "/airflow/xcom/return.json"     # where KubernetesPodOperator's sidecar reads the task's XCom
# Airflow's run_id is unique per DAG only (every daily DAG has "scheduled__2026-12-02T00:00:00+00:00"):
# the Conveyor run id puts the dag_id first and turns ':' and '+' into '-' (what a plain run id allows)
RUN_ID = "{{ conveyor_run_id(dag.dag_id, run_id) }}"
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")   # what Airflow accepts as a dag_id or task_id
# JSON-schema types of the DAG params; a json parameter takes any JSON value
SCHEMA_TYPES = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}

_HEADER = '''"""Airflow DAG of the Conveyor pipeline {pipeline!r}, written by `conveyor export --target airflow`.

Every task runs Conveyor's entry point (`python -m conveyor step exec`)
{how}. Export the pipeline again instead of editing this file: the entry point refuses a
graph whose shape differs from the exported one ({shape}).
"""

from __future__ import annotations

import datetime
import json
import re
'''

_PARAM_TEXT = '''

def param_text(value, kind):
    """A parameter's value as the entry point's `-p NAME=TEXT` takes it (JSON for json parameters)."""
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    if kind == "boolean":
        return "true" if value else "false"
    return "" if value is None else str(value)


def conveyor_run_id(dag_id, run_id):
    """The Conveyor run of one DAG run, the id `conveyor runs import` takes (run_ids repeat across DAGs)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{dag_id}__{run_id}")


@task(task_id="elements")
def element_arguments(arguments, emitted, key):
    """One argument list per element index the fan-out's source emitted: what the mapped task expands over."""
    return [[*arguments, "--map-index", str(index)] for index in emitted[key]]


@task.short_circuit(task_id="condition")
def condition(emitted, key):
    """Whether the decider found the condition true; false skips every task under it and after them."""
    return emitted[key] is True
'''

_LOCAL = '''

@task(task_id="step")
def conveyor_step(arguments, emits):
    """Run one step through Conveyor's entry point on this worker; return what it emitted for XCom.

    Exit status 1 means the step failed after its own retries (Airflow may retry the task; the entry
    point then fails at once); 2 is a usage error (shape or parameter mismatch), which no retry heals.
    """
    import logging
    import os
    import subprocess
    import tempfile

    log = logging.getLogger("airflow.task")
    with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        emit_file = os.path.join(tmp, "emitted.json")
        argv = [*arguments, "--emit-json", emit_file] if emits else list(arguments)
        if not os.path.isdir(WORKDIR):
            raise AirflowFailException(f"The project folder {WORKDIR} is not on this worker. Export with "
                                       "--workdir set to where the project is on the Airflow workers.")
        with subprocess.Popen(argv, cwd=WORKDIR, env={**os.environ, **TASK_ENV}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as proc:
            for line in proc.stdout:
                log.info("%s", line.rstrip())
        if proc.returncode == 2:
            raise AirflowFailException("Conveyor's entry point refused the task (exit status 2); see the log above.")
        if proc.returncode != 0:
            raise AirflowException(f"The step failed (exit status {proc.returncode}); its record says why.")
        if not emits:
            return None
        with open(emit_file) as f:
            return json.load(f)
'''


class AirflowTarget:
    """One DAG file for Airflow 2.10+, its tasks on Kubernetes (the image) or on the worker (``dag.test()``)."""

    name: ClassVar[str] = "airflow"
    extra: ClassVar[str] = "airflow"
    option_names: ClassVar[tuple[str, ...]] = ("operator",)

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        """``dags/<pipeline>.py``: the DAG, generated from the plan (no Airflow needed to export)."""
        plan.check()
        operator = _operator(options)
        _check_ids(plan)
        if operator == "local":
            _check_local(plan)
        return {dag_path(plan): DagWriter(plan, operator).text()}

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """Build and push the image (kubernetes), copy the DAG into the DAG folder, trigger a run."""
        dag_file = next((f for f in files if f.as_posix().endswith(dag_path(plan))), None)
        if dag_file is None:
            raise ExportError(f"The Airflow DAG file {dag_path(plan)} is not among the written files.")
        out_dir = dag_file.parent.parent
        commands = build_commands(plan, out_dir) if _operator(options) == "kubernetes" else []
        return [*commands,
                f'cp {shlex.quote(str(dag_file))} "${{AIRFLOW__CORE__DAGS_FOLDER:-$AIRFLOW_HOME/dags}}/"',
                f"airflow dags trigger {plan.pipeline}"]


def conveyor_run_id(dag_id: str, run_id: str) -> str:
    """The Conveyor run id the exported DAG gives Airflow's run ``run_id`` (what ``conveyor runs import`` takes)."""
    from conveyor.runtime.entry import run_id_of

    return run_id_of(re.sub(r"[^A-Za-z0-9_.-]", "-", f"{dag_id}__{run_id}"))


def dag_path(plan: Plan) -> str:
    """The DAG file's path, relative to the export folder (a folder to point a DAG folder at)."""
    return f"dags/{plan.pipeline}.py"


def element_task(task: Task) -> str:
    """The task that lists a mapped task's argument lists."""
    return f"{task.name}__elements"


def condition_task(output: str) -> str:
    """The short-circuit task of the condition a decider emits as ``output``."""
    return f"{output}__condition"


def _operator(options: ExportOptions) -> str:
    operator = options.get("operator", DEFAULT_OPERATOR) or DEFAULT_OPERATOR
    if operator not in OPERATORS:
        raise ExportError(f"Airflow option operator={operator!r} is not one this target writes. Use "
                          "--option operator=kubernetes (KubernetesPodOperator runs the image) or "
                          "--option operator=local (the Airflow worker runs the entry point itself).")
    return operator


def _check_local(plan: Plan) -> None:
    """An instance type asks for a machine, which a task on the Airflow worker cannot choose.

    (CPU, memory and GPUs stay hints there, as in a local run, which does not enforce them either.)
    """
    for t in plan:
        if t.instance_type:
            raise ExportError(f"Step '{t.name}': instance type {t.instance_type!r} cannot be chosen with "
                              "operator=local, whose tasks run on the Airflow worker itself. Export with "
                              "--option operator=kubernetes (the instance type becomes a node selector), or "
                              "without --instance-type.")


def _check_ids(plan: Plan) -> None:
    if not _ID.match(plan.pipeline):
        raise ExportError(f"Pipeline '{plan.pipeline}' cannot be an Airflow dag_id (letters, digits, '_', '.', '-'). "
                          "Rename the pipeline function.")
    names = set(plan.tasks)
    for t in plan:
        if not _ID.match(t.name):
            raise ExportError(f"Step '{t.name}' cannot be an Airflow task_id (letters, digits, '_', '.', '-'). "
                              "Rename the step or its call.")
        helpers = [element_task(t)] if t.fan_out is not None else []
        helpers += [condition_task(e.name) for e in t.emits if e.kind == "boolean"]
        for helper in helpers:
            if helper in names:
                raise ExportError(f"Step '{helper}' has the name of the Airflow task the export adds for step "
                                  f"'{t.name}'. Rename that step.")


class DagWriter:
    """The DAG file's text for one plan and operator; deterministic (no time, no ordering by hash)."""

    def __init__(self, plan: Plan, operator: str) -> None:
        self.plan = plan
        self.operator = operator
        self.kubernetes = operator == "kubernetes"
        self.ident = {name: _var(name) for name in plan.tasks}
        self.shared = self._shared_arguments()

    def text(self) -> str:
        how = ("in the image on Kubernetes (KubernetesPodOperator)" if self.kubernetes
               else "as a subprocess of the Airflow worker")
        parts = [_HEADER.format(pipeline=self.plan.pipeline, how=how, shape=self.plan.shape), self._imports(),
                 self._constants(), _PARAM_TEXT]
        if not self.kubernetes:
            parts.append(_LOCAL)
        parts.append(self._dag())
        return "".join(parts)

    # --- the module's top ----------------------------------------------------------------------

    def _imports(self) -> str:
        lines = [
            "",
            "try:  # Airflow 3",
            "    from airflow.sdk import DAG, Param, task",
            "except ImportError:  # Airflow 2.10",
            "    from airflow import DAG",
            "    from airflow.decorators import task",
            "    from airflow.models.param import Param",
        ]
        if self.kubernetes:
            lines += ["from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator",
                      "from kubernetes.client import models as k8s"]
        else:
            lines += ["from airflow.exceptions import AirflowException, AirflowFailException"]
        return "\n".join(lines) + "\n"

    def _constants(self) -> str:
        lines = ["", f"TASK_ENV = {_literal(dict(sorted(self.plan.env.items())))}",
                 f"PYTHON = {self.plan.python!r}"]
        if self.kubernetes:
            lines += [f"IMAGE = {self.plan.image!r}", f"XCOM_FILE = {XCOM_FILE!r}"]
        else:
            lines.append(f"WORKDIR = {self.plan.project_dir!r}")
        if self.shared is not None:
            lines += ["# the entry point's argv, around the node each task names (Airflow renders the templates)",
                      f"COMMAND = {_literal(self.shared[0][1:])}",
                      f"ARGUMENTS = {_literal(self.shared[1])}",
                      "",
                      "",
                      "def entry_point(node, *extra):",
                      '    """The entry point\'s arguments for one node, after the interpreter."""',
                      '    return [*COMMAND, "--node", node, *ARGUMENTS, *extra]']
        return "\n".join(lines) + "\n"

    # --- the DAG ------------------------------------------------------------------------------

    def _dag(self) -> str:
        p = self.plan
        out = ["", "", "with DAG(",
               f"    dag_id={p.pipeline!r},",
               f"    description={f'Conveyor pipeline {p.pipeline} ({p.ref})'!r},",
               "    schedule=None,",
               "    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),",
               "    catchup=False,",
               "    tags=['conveyor'],",
               "    user_defined_macros={'param_text': param_text, 'conveyor_run_id': conveyor_run_id},",
               "    params={"]
        for spec in p.params:
            out.append(f"        {spec.name!r}: {_param(spec)},")
        out.append(f"        {RESUME_PARAM!r}: Param({p.resume_from!r}, type='string', "
                   "description='A Conveyor run id: reuse every step that finished in it (empty: none).'),")
        out += ["    },", ") as dag:"]
        for t in p:
            out += self._task(t)
        edges = self._edges()
        if edges:
            out += ["", "    # dependencies beyond the data the tasks pass one another"]
            out += [f"    {a} >> {b}" for a, b in edges]
        return "\n".join(out) + "\n"

    def _task(self, t: Task) -> list[str]:
        var = self.ident[t.name]
        emits = bool(t.emits)
        argv = self._arguments(t, emits)
        out = [""]
        settings = self._settings(t)
        if t.fan_out is not None:
            fan = t.fan_out
            if fan.source is not None:
                emitted = self._emitted(fan.source)
                key = fan.output
            else:
                emitted = _literal({"static": list(fan.static or ())})
                key = "static"
            elements = f"{var}__elements"
            out.append(f"    {elements} = element_arguments.override(task_id={element_task(t)!r})(")
            out.append(f"        arguments={argv},")
            out.append(f"        emitted={emitted}, key={key!r})")
            if self.kubernetes:
                out.append(f"    {var} = KubernetesPodOperator.partial(")
                out += [f"        {s}," for s in settings + self._pod(t, emits)]
                out.append(f"    ).expand(arguments={elements})")
            else:
                out.append(f"    {var} = conveyor_step.override(")
                out += [f"        {s}," for s in settings]
                out.append(f"    ).partial(emits={emits!r}).expand(arguments={elements})")
        elif self.kubernetes:
            out.append(f"    {var} = KubernetesPodOperator(")
            out += [f"        {s}," for s in settings + self._pod(t, emits)]
            out.append(f"        arguments={argv},")
            out.append("    )")
        else:
            out.append(f"    {var} = conveyor_step.override(")
            out += [f"        {s}," for s in settings]
            out.append(f"    )(arguments={argv}, emits={emits!r})")
        for e in t.emits:
            if e.kind == "boolean":
                out.append(f"    {var}__{e.name} = condition.override(task_id={condition_task(e.name)!r})"
                           f"(emitted={self._emitted(t.name)}, key={e.name!r})   # {e.describe}")
        return out

    def _command(self, t: Task, emits: bool) -> list[str]:
        return self.plan.command(
            t, run_id=RUN_ID, params={s.name: _param_template(s) for s in self.plan.params},
            resume_from=f"{{{{ params.{RESUME_PARAM} }}}}", emit_json=XCOM_FILE if emits and self.kubernetes else None)

    def _shared_arguments(self) -> tuple[list[str], list[str]] | None:
        """The argv around ``--node NAME`` that every task shares, to write once in the DAG file."""
        around = set()
        for t in self.plan:
            argv = self._command(t, False)
            i = argv.index("--node")
            around.add((tuple(argv[:i]), tuple(argv[i + 2:])))
        if len(around) != 1:
            return None
        before, after = around.pop()
        return list(before), list(after)

    def _arguments(self, t: Task, emits: bool) -> str:
        """The task's argv (after the interpreter for a pod) as an expression of the DAG file."""
        argv = self._command(t, emits)
        extra = ["--emit-json", XCOM_FILE] if emits and self.kubernetes else []
        if self.shared is not None and argv == [*self.shared[0], "--node", t.name, *self.shared[1], *extra]:
            call = f"entry_point({', '.join(repr(a) for a in [t.name, *extra])})".replace(repr(XCOM_FILE), "XCOM_FILE")
            return call if self.kubernetes else f"[PYTHON, *{call}]"
        return _literal(argv[1:] if self.kubernetes else argv, indent=8)

    def _emitted(self, name: str) -> str:
        """The XCom of what task ``name`` emitted, in the DAG's code."""
        var = self.ident[name]
        return f"{var}.output" if self.kubernetes else var

    def _settings(self, t: Task) -> list[str]:
        s = [f"task_id={t.name!r}"]
        if t.retries:
            s += [f"retries={t.retries}",
                  f"retry_delay=datetime.timedelta(seconds={t.backoff!r})",
                  "retry_exponential_backoff=True",
                  f"max_retry_delay=datetime.timedelta(seconds={t.backoff_max!r})"]
        else:
            s.append("retries=0")
        if t.deadline_s is not None:
            s.append(f"execution_timeout=datetime.timedelta(seconds={t.deadline_s})")
        if t.fan_out is not None and t.fan_out.max_parallel is not None:
            s.append(f"max_active_tis_per_dagrun={t.fan_out.max_parallel}")   # .map(max_parallel=N), per run
        if self._joins_a_fan_out(t):
            # an empty fan-out leaves its mapped task skipped; the join still runs, as it does locally
            # (a false condition skips it anyway: its short-circuit task skips everything after it)
            s.append("trigger_rule='none_failed'")
        return s

    def _pod(self, t: Task, emits: bool) -> list[str]:
        pod = [f"name={t.name.replace('_', '-').lower()!r}", "image=IMAGE", "cmds=[PYTHON]",
               "env_vars=TASK_ENV", f"do_xcom_push={emits!r}", "get_logs=True", "on_finish_action='delete_pod'"]
        res = resources(t)
        requests, limits = res.get("requests", {}), res.get("limits", {})
        if requests or limits:
            pod.append(f"container_resources=k8s.V1ResourceRequirements(requests={_literal(requests)}, "
                       f"limits={_literal(limits)})")
        if t.instance_type:
            pod.append(f"node_selector={_literal({INSTANCE_TYPE_LABEL: t.instance_type})}")
        return pod

    def _joins_a_fan_out(self, t: Task) -> bool:
        return any(self.plan.tasks[up].fan_out is not None for up in t.upstream)

    def _edges(self) -> list[tuple[str, str]]:
        """Step-to-step dependencies, and each condition task before every task under that condition."""
        edges: list[tuple[str, str]] = []
        for t in self.plan:
            for up in t.upstream:
                edges.append((self.ident[up], self.ident[t.name]))
            for g in t.gates:
                edges.append((f"{self.ident[g.decider]}__{g.output}", self.ident[t.name]))
        return list(dict.fromkeys(edges))


def _param(spec: ParamSpec) -> str:
    args = [_literal(spec.default)]
    if spec.type in SCHEMA_TYPES:
        kind = SCHEMA_TYPES[spec.type]
        # a parameter without a default takes null too, as the pipeline does
        args.append(f"type={kind!r}" if spec.default is not None else f"type={[kind, 'null']!r}")
    if spec.choices:
        args.append(f"enum={_literal(list(spec.choices))}")
    description = f"{spec.type}: passed to every task as -p {spec.name}=..."
    if spec.type == "json":
        description = f"any JSON value: passed to every task as -p {spec.name}=<JSON text>"
    args.append(f"description={description!r}")
    return f"Param({', '.join(args)})"


def _param_template(spec: ParamSpec) -> str:
    """The Jinja text that renders a DAG param as the entry point's parameter text."""
    return f"{{{{ param_text(params[{spec.name!r}], {spec.type!r}) }}}}"


def _var(name: str) -> str:
    """A Python identifier for a task's variable in the DAG file."""
    ident = re.sub(r"\W", "_", name)
    return f"t_{ident}"


def _literal(value: object, indent: int = 0) -> str:
    """A Python literal of JSON-like ``value``; a long list goes one item a line (readable diffs)."""
    if isinstance(value, list) and len(repr(value)) > 80:
        pad = " " * (indent + 4)
        return "[\n" + "".join(f"{pad}{_literal(v, indent + 4)},\n" for v in value) + " " * indent + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v, indent)}" for k, v in value.items()) + "}"
    return repr(value)


