"""The KFP v2 IR of a plan: a ``PipelineSpec`` (and its platform spec) written without the SDK.

Each task is a Lightweight Python Component, the shape every KFP runner runs, ``kfp.local``'s
SubprocessRunner included (it refuses container components): the component's module holds one
function that fills the entry point's argv with the task's inputs, runs ``python -m conveyor step
exec ... --emit-json FILE`` in the image, and returns what it emitted as the component's outputs
(a boolean per condition the step decides, the list of element indices per fan-out it sources).

A task's *path* is the tuple of conditions it runs under; it lives in that path's DAG: the root,
or a ``dsl.If`` sub-DAG nested once per condition (a trigger condition on the decider's output).
A mapped task lives in a ``dsl.ParallelFor`` sub-DAG of its own, iterating over the source's list;
when the source runs in the same DAG, a plain sub-DAG takes the list as an input first, so that the
loop iterates over an input of its DAG (the one form ``kfp.local`` resolves, and valid everywhere).
Values a DAG needs from an enclosing one (parameters, a decider's boolean, a source's list) come
down as pipeline channels. KFP's own cache is off on every task: the entry point decides cache
hits with the key a local run computes and records every task of the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions
from conveyor.export.plan import RESUME_PARAM, ParamSpec, Plan, Task
from conveyor.export.yaml_text import to_yaml

KFP_VERSION = "2.17.3"          # the SDK whose executor runs the components (installed at task start, as the SDK does)
SCHEMA_VERSION = "2.1.0"
IR_FILE = "pipeline.yaml"
RUN_ID_INPUT = "conveyor_run_id"
MAP_INDEX_INPUT = "conveyor_map_index"
JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"   # dsl.PIPELINE_JOB_ID_PLACEHOLDER: one id per run, in every task
EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
PARAM_TYPES = {"integer": "NUMBER_INTEGER", "number": "NUMBER_DOUBLE", "string": "STRING", "boolean": "BOOLEAN",
               "json": "STRING"}
PY_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "json": "str"}
EMIT_TYPES = {"boolean": ("BOOLEAN", "bool"), "list": ("LIST", "list")}

# The command and module of a Lightweight Python Component, as the SDK writes them: runners recognise
# the component by the executor module (kfp.local refuses anything else) and pass the source as $0.
_INSTALL = ("\nif ! [ -x \"$(command -v pip)\" ]; then\n    python3 -m ensurepip || python3 -m ensurepip --user || "
            "apt-get install python3-pip\nfi\n\nPIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet "
            f"--no-warn-script-location 'kfp=={KFP_VERSION}' '--no-deps' "
            "'typing-extensions>=3.7.4,<5; python_version<\"3.9\"' && \"$0\" \"$@\"\n")
_LAUNCH = ('program_path=$(mktemp -d)\n\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n'
           '_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path '
           '"$program_path/ephemeral_component.py" "$@"\n')

# Runs inside the component: fills the entry point's argv with the task's inputs, runs it, returns
# what it emitted. Its own failure (exit status 1 after the step's retries) fails the KFP task.
RUNNER_SOURCE = '''
def _conveyor_step(argv, values, emits):
    import json
    import os
    import subprocess
    import tempfile

    def text(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def fill(arg):
        for token, value in values.items():
            arg = arg.replace(token, text(value))
        return arg

    with tempfile.TemporaryDirectory() as tmp:
        emitted = os.path.join(tmp, "emitted.json")
        cmd = []
        for arg in argv:
            if arg == "{conveyor:emit}":
                cmd.append(emitted)
            elif arg == "{conveyor:resume}" and not values.get(arg):
                cmd.pop()   # no run to resume from: drop --resume-from
            else:
                cmd.append(fill(arg))
        print("conveyor: " + " ".join(cmd), flush=True)
        code = subprocess.call(cmd)
        if code != 0:
            raise RuntimeError(f"conveyor step exec exited with status {code}; the step's record in the artifact "
                               "root says why (conveyor runs import RUN_ID --from ROOT, then conveyor runs show).")
        if not emits:
            return None
        with open(emitted) as f:
            out = json.load(f)
        missing = [name for name in emits if name not in out]
        if missing:
            raise RuntimeError(f"conveyor step exec did not emit {missing}; the image's Conveyor is older than "
                               "the export. Build the image again from the exported context.")
        return tuple(out[name] for name in emits)
'''


@dataclass
class _Dag:
    """One DAG of the IR: the root, a condition's sub-DAG, or a fan-out's."""

    name: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)


class Platform(Protocol):
    """What differs between Kubeflow and Vertex AI in the IR: resources and the platform spec."""

    platform: str          # the platform spec's key ("kubernetes"), or "" for none

    def resources(self, task: Task, options: ExportOptions) -> dict[str, Any]: ...

    def platform_executor(self, task: Task, options: ExportOptions) -> dict[str, Any]: ...


def compile_ir(plan: Plan, options: ExportOptions, target: Platform) -> str:
    """The IR's text: the ``PipelineSpec`` document, then the platform spec's when there is one."""
    plan.check()
    spec, platform = _Compiler(plan, options, target).build()
    text = _HEADER.format(name=plan.pipeline) + to_yaml(spec)
    if platform:
        text += "---\n" + to_yaml(platform)
    return text


_HEADER = "# PIPELINE DEFINITION\n# Name: {name}\n# Written by conveyor export: one Conveyor step per task.\n"


class _Compiler:
    """Lowers a plan to the IR: components and executors per task, the root DAG and its sub-DAGs.

    A task's *path* is the tuple of conditions it runs under (those of what it waits for first); it lives
    in the DAG of that path: the root, or the ``dsl.If`` sub-DAG nested once per condition. A mapped
    task lives in a ``dsl.ParallelFor`` sub-DAG of its own inside that DAG. Values a DAG needs from an
    enclosing one (parameters, a decider's boolean, a source's list) come down as pipeline channels.
    """

    def __init__(self, plan: Plan, options: ExportOptions, target: Platform) -> None:
        self.plan, self.options, self.target = plan, options, target
        for p in plan.params:
            if p.name in (RUN_ID_INPUT, MAP_INDEX_INPUT):
                raise ExportError(f"Pipeline '{plan.pipeline}' has a parameter named {p.name}, a name the KFP export "
                                  "uses for the run id or the element index. Rename that parameter.")
        self.params = [*plan.params, ParamSpec(RESUME_PARAM, "string", plan.resume_from)]
        self.ids = task_ids(plan)
        self.gates = {g.output: g for t in plan for g in t.gates}
        self.paths = self._paths()
        self.dags: dict[tuple[str, ...], _Dag] = {(): _Dag("root")}
        for t in plan:
            path = self.paths[t.name]
            for depth in range(1, len(path) + 1):
                if path[:depth] not in self.dags:
                    self.dags[path[:depth]] = _Dag(f"condition-{len(self.dags)}")
        # channels a sub-DAG receives from its parent: name -> (producer task, output)
        self.needs: dict[tuple[str, ...], dict[str, tuple[str, str]]] = {k: {} for k in self.dags}
        self.components: dict[str, Any] = {}
        self.executors: dict[str, Any] = {}
        self.platform: dict[str, Any] = {}

    def build(self) -> tuple[dict[str, Any], dict[str, Any]]:
        plan = self.plan
        for t in plan:
            self._component(t)
            self._place(t)
        for key in sorted((k for k in self.dags if k), key=len, reverse=True):   # deepest first: channels flow up
            self._condition(key)
        for t in plan:
            for up in t.upstream:
                self._depend(self.paths[up], self._element(t.name, self.paths[up]), self._element(up, self.paths[up]))
        for key, dag in self.dags.items():
            if key:
                self.components[f"comp-{dag.name}"] = {"dag": {"tasks": _sorted(dag.tasks)},
                                                        "inputDefinitions": {"parameters": _sorted(dag.inputs)}}
        spec: dict[str, Any] = {
            "components": _sorted(self.components),
            "deploymentSpec": {"executors": _sorted(self.executors)},
            "pipelineInfo": {"name": _k8s_name(plan.pipeline),
                             "description": f"Conveyor pipeline {plan.pipeline} ({plan.ref}), shape {plan.shape}."},
            "root": {"dag": {"tasks": _sorted(self.dags[()].tasks)},
                     "inputDefinitions": {"parameters": {p.name: _param_def(p) for p in self.params}}},
            "schemaVersion": SCHEMA_VERSION,
            "sdkVersion": f"kfp-{KFP_VERSION}",
        }
        if self.options.get("pipeline_root"):
            spec["defaultPipelineRoot"] = self.options.get("pipeline_root")
        platform: dict[str, Any] = {}
        if self.platform:
            platform = {"platforms": {self.target.platform: {"deploymentSpec": {"executors": _sorted(self.platform)}}}}
        return spec, platform

    def _paths(self) -> dict[str, tuple[str, ...]]:
        """Each task's conditions, nested as KFP nests ``dsl.If`` blocks: those of what it waits for, then its own.

        A task that waits for a task under a ``dsl.If`` must run inside that ``dsl.If``, so the conditions of
        everything a task waits for must nest in one another (a chain); a task waiting for two tasks under
        different conditions, neither inside the other, has no place in KFP's DAGs and is refused.
        """
        paths: dict[str, tuple[str, ...]] = {}
        for t in self.plan:           # topological: every upstream's path is known
            ups = sorted(t.upstream, key=lambda u: len(paths[u]))
            base = paths[ups[-1]] if ups else ()
            for up in ups:
                if base[:len(paths[up])] != paths[up]:
                    raise ExportError(
                        f"Step '{t.name}' waits for '{up}' (under {self._describe(paths[up])}) and '{ups[-1]}' (under "
                        f"{self._describe(base)}), and neither condition holds the other: KFP runs a task that "
                        "waits for one under a dsl.If only inside that dsl.If, so it has no place for this step. "
                        f"Call '{up}' and '{ups[-1]}' inside the same nested `with cv.when(...)` blocks, or compute "
                        "what the step needs from them in one step under one condition.")
            own = sorted({g.output for g in t.gates} - set(base), key=_gate_number)
            paths[t.name] = (*base, *own)
        return paths

    def _describe(self, path: tuple[str, ...]) -> str:
        return " and ".join(f"`{self.gates[g].describe}`" for g in path) or "none"

    def _element(self, name: str, path: tuple[str, ...]) -> str:
        """What stands for task ``name`` in the DAG at ``path``: the task, its loop, or the sub-DAG it is in."""
        own = self.paths[name]
        if own == path:
            return self._outermost(name)
        return self.dags[own[:len(path) + 1]].name

    def _outermost(self, name: str) -> str:
        """The task itself, or the loop or fan-out group that holds it in its DAG."""
        ident = self.ids[name]
        for wrapper in (f"fan-out-{ident}", f"for-loop-{ident}"):
            if wrapper in self.dags[self.paths[name]].tasks:
                return wrapper
        return ident

    def _depend(self, path: tuple[str, ...], element: str, on: str) -> None:
        deps = self.dags[path].tasks[element].setdefault("dependentTasks", [])
        if on not in deps:
            deps.append(on)
            deps.sort()

    def _value(self, producer: str, output: str, path: tuple[str, ...]) -> dict[str, Any]:
        """An emitted value as the DAG at ``path`` sees it: the producer's output there, a channel below it."""
        task = self.plan.tasks[producer]
        if task.fan_out is not None:
            raise ExportError(f"Step '{producer}' is fanned out and emits {output}; one task must emit it. Add a step "
                              "that joins its outputs and decide on that step instead.")
        if self.paths[producer] == path:
            return {"taskOutputParameter": {"outputParameterKey": output, "producerTask": self.ids[producer]}}
        channel = _channel(self.ids[producer], output)
        self.needs[path][channel] = (producer, output)
        return {"componentInputParameter": channel}

    def _param(self, name: str, path: tuple[str, ...], *, nested: bool = False) -> dict[str, Any]:
        """A pipeline parameter as a DAG at ``path`` sees it (a loop's body is ``nested`` one deeper)."""
        return {"componentInputParameter": f"pipelinechannel--{name}" if path or nested else name}

    # --- a task: its component, its executor, its place in a DAG ----------------------------------------

    def _component(self, t: Task) -> None:
        ident = self.ids[t.name]
        inputs: dict[str, Any] = {RUN_ID_INPUT: {"parameterType": "STRING"}}
        inputs.update({p.name: {"parameterType": PARAM_TYPES[p.type]} for p in self.params})
        if t.fan_out is not None:
            inputs[MAP_INDEX_INPUT] = {"parameterType": "NUMBER_INTEGER"}
        comp: dict[str, Any] = {"executorLabel": f"exec-{ident}", "inputDefinitions": {"parameters": _sorted(inputs)}}
        if t.emits:
            comp["outputDefinitions"] = {"parameters": {e.name: {"parameterType": EMIT_TYPES[e.kind][0]}
                                                        for e in t.emits}}
        self.components[f"comp-{ident}"] = comp
        container: dict[str, Any] = {
            "image": self.plan.image,
            "command": self._command(t),
            "args": ["--executor_input", EXECUTOR_INPUT_PLACEHOLDER, "--function_to_execute", _function_name(t)],
        }
        if self.plan.env:
            container["env"] = [{"name": k, "value": v} for k, v in sorted(self.plan.env.items())]
        resources = self.target.resources(t, self.options)
        if resources:
            container["resources"] = resources
        self.executors[f"exec-{ident}"] = {"container": container}
        platform = self.target.platform_executor(t, self.options)
        if platform:
            self.platform[f"exec-{ident}"] = platform

    def _command(self, t: Task) -> list[str]:
        """The Lightweight Python Component's command: its function calls the entry point with the inputs."""
        plan = self.plan
        mapped = t.fan_out is not None
        argv = plan.command(t, run_id="{conveyor:run_id}",
                            params={p.name: f"{{conveyor:{p.name}}}" for p in plan.params},
                            map_index="{conveyor:map_index}" if mapped else None,
                            resume_from="{conveyor:resume}", emit_json="{conveyor:emit}" if t.emits else None)
        args = [f"{RUN_ID_INPUT}: str", *(f"{p.name}: {PY_TYPES[p.type]}" for p in self.params)]
        values = [("{conveyor:run_id}", RUN_ID_INPUT), ("{conveyor:resume}", RESUME_PARAM),
                  *((f"{{conveyor:{p.name}}}", p.name) for p in plan.params)]
        if mapped:
            args.append(f"{MAP_INDEX_INPUT}: int")
            values.append(("{conveyor:map_index}", MAP_INDEX_INPUT))
        returns = ""
        if t.emits:
            fields = ", ".join(f"({e.name!r}, {EMIT_TYPES[e.kind][1]})" for e in t.emits)
            returns = f" -> NamedTuple('Outputs', [{fields}])"
        doc = json.dumps(f"Conveyor step {t.step!r} (node {t.name!r}) of pipeline {plan.pipeline!r}.")
        body = (f"def {_function_name(t)}({', '.join(args)}){returns}:\n"
                f"    {doc}\n"
                f"    argv = {json.dumps(argv)}\n"
                f"    values = {{{', '.join(f'{k!r}: {v}' for k, v in values)}}}\n"
                f"    return _conveyor_step(argv, values, {[e.name for e in t.emits]!r})\n")
        imports = "import kfp\nfrom kfp import dsl\nfrom kfp.dsl import *\nfrom typing import *\n"   # as the SDK writes
        source = f"{imports}{RUNNER_SOURCE}\n\n{body}\n"
        install = (self.options.get("install_kfp") or "true").lower() not in ("false", "0", "no")
        return [*(["sh", "-c", _INSTALL] if install else []), "sh", "-ec", _LAUNCH, source]

    def _place(self, t: Task) -> None:
        """The task's spec in its DAG, inside a ``dsl.ParallelFor`` sub-DAG of its own when it is mapped."""
        ident, path = self.ids[t.name], self.paths[t.name]
        mapped = t.fan_out is not None
        inputs: dict[str, Any] = {RUN_ID_INPUT: {"runtimeValue": {"constant": JOB_ID_PLACEHOLDER}}}
        inputs.update({p.name: self._param(p.name, path, nested=mapped) for p in self.params})
        if mapped:
            inputs[MAP_INDEX_INPUT] = {"componentInputParameter": _loop_item(ident)}
        spec: dict[str, Any] = {
            "cachingOptions": {},       # KFP's cache off: Conveyor's entry point decides hits and records them
            "componentRef": {"name": f"comp-{ident}"},
            "inputs": {"parameters": _sorted(inputs)},
            "taskInfo": {"name": ident},
        }
        if t.retries:
            spec["retryPolicy"] = {"backoffDuration": _duration(t.backoff), "backoffFactor": 2.0,
                                   "backoffMaxDuration": _duration(t.backoff_max), "maxRetryCount": t.retries}
        if not mapped:
            self.dags[path].tasks[ident] = spec
            return
        fan = t.fan_out
        assert fan is not None
        loop = f"for-loop-{ident}"
        body_inputs: dict[str, Any] = {f"pipelinechannel--{p.name}": {"parameterType": PARAM_TYPES[p.type]}
                                       for p in self.params}
        body_inputs[_loop_item(ident)] = {"parameterType": "NUMBER_INTEGER"}
        loop_spec: dict[str, Any] = {"componentRef": {"name": f"comp-{loop}"}, "taskInfo": {"name": loop}}
        if fan.max_parallel is not None:   # dsl.ParallelFor(..., parallelism=N)
            loop_spec["iteratorPolicy"] = {"parallelismLimit": fan.max_parallel}
        self.components[f"comp-{loop}"] = {"dag": {"tasks": {ident: spec}},
                                           "inputDefinitions": {"parameters": _sorted(body_inputs)}}
        if fan.source is None:
            loop_spec["parameterIterator"] = {"itemInput": _loop_item(ident),
                                              "items": {"raw": json.dumps(list(fan.static or ()))}}
            loop_spec["inputs"] = {"parameters": _sorted({f"pipelinechannel--{p.name}": self._param(p.name, path)
                                                          for p in self.params})}
            self.dags[path].tasks[loop] = loop_spec
            return
        channel = _channel(self.ids[fan.source], str(fan.output))
        body_inputs[channel] = {"parameterType": "LIST"}
        loop_spec["parameterIterator"] = {"itemInput": _loop_item(ident), "items": {"inputParameter": channel}}
        inner = {f"pipelinechannel--{p.name}": {"componentInputParameter": f"pipelinechannel--{p.name}"}
                 for p in self.params}
        inner[channel] = {"componentInputParameter": channel}
        loop_spec["inputs"] = {"parameters": _sorted(inner)}
        source = self._value(fan.source, str(fan.output), path)
        if "componentInputParameter" in source:      # the list comes down into this DAG: iterate over it here
            self.dags[path].tasks[loop] = loop_spec
            return
        # The source runs in this DAG: its list enters a sub-DAG holding the loop, so that the loop iterates
        # over an input of its own DAG (what every runner resolves; kfp.local reads no other items).
        group = f"fan-out-{ident}"
        outer: dict[str, Any] = {f"pipelinechannel--{p.name}": self._param(p.name, path) for p in self.params}
        outer[channel] = source
        group_inputs = {k: v for k, v in body_inputs.items() if k != _loop_item(ident)}
        self.components[f"comp-{group}"] = {"dag": {"tasks": {loop: loop_spec}},
                                            "inputDefinitions": {"parameters": _sorted(group_inputs)}}
        self.dags[path].tasks[group] = {"componentRef": {"name": f"comp-{group}"},
                                        "dependentTasks": [self.ids[fan.source]],
                                        "inputs": {"parameters": _sorted(outer)}, "taskInfo": {"name": group}}

    def _condition(self, key: tuple[str, ...]) -> None:
        """``dsl.If``: the sub-DAG at ``key`` as a task of its parent, triggered when the decider emitted true."""
        parent, gate = key[:-1], self.gates[key[-1]]
        dag = self.dags[key]
        channel = _channel(self.ids[gate.decider], gate.output)
        self.needs[key][channel] = (gate.decider, gate.output)
        inputs: dict[str, Any] = {f"pipelinechannel--{p.name}": self._param(p.name, parent) for p in self.params}
        dag.inputs.update({f"pipelinechannel--{p.name}": {"parameterType": PARAM_TYPES[p.type]} for p in self.params})
        producers = set()
        for name, (producer, output) in sorted(self.needs[key].items()):
            inputs[name] = self._value(producer, output, parent)
            dag.inputs[name] = {"parameterType": "LIST" if output.startswith("fanout_") else "BOOLEAN"}
            if self.paths[producer] == parent:
                producers.add(self.ids[producer])
        self.dags[parent].tasks[dag.name] = {
            "componentRef": {"name": f"comp-{dag.name}"},
            "inputs": {"parameters": _sorted(inputs)},
            "taskInfo": {"name": dag.name},
            "triggerPolicy": {"condition": f"inputs.parameter_values['{channel}'] == true"},
        }
        for producer in sorted(producers):
            self._depend(parent, dag.name, producer)


# --- names, values and text ---------------------------------------------------------------------------

def task_ids(plan: Plan) -> dict[str, str]:
    """Each node's name as KFP names tasks (lowercase letters, digits, dashes), unique in the plan."""
    ids: dict[str, str] = {}
    for t in plan:
        base = _k8s_name(t.name)
        if base.startswith(("condition-", "for-loop-", "fan-out-")):
            base = f"step-{base}"
        ident, n = base, 2
        while ident in ids.values():
            ident, n = f"{base}-{n}", n + 1
        ids[t.name] = ident
    return ids


def _k8s_name(name: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-") or "step"


def _function_name(t: Task) -> str:
    return "step_" + re.sub(r"\W", "_", t.name)


def _gate_number(output: str) -> int:
    tail = output.rpartition("_")[2]
    return int(tail) if tail.isdigit() else 0


def _channel(producer: str, output: str) -> str:
    # "task--output": the form kfp.local resolves to a task's output when it evaluates a condition
    return f"pipelinechannel--{producer}--{output}"


def _loop_item(ident: str) -> str:
    return f"pipelinechannel--loop-item-{ident}"


def _sorted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: mapping[k] for k in sorted(mapping)}


def _param_def(p: ParamSpec) -> dict[str, Any]:
    """A root input: its IR type and its default (the exported value; JSON text for json parameters)."""
    kind = PARAM_TYPES[p.type]
    if p.type in ("string", "json"):
        default: Any = p.text()
    elif p.default is None:
        return {"parameterType": kind}
    elif p.type == "boolean":
        default = bool(p.default)
    else:
        default = p.default
    return {"defaultValue": default, "isOptional": True, "parameterType": kind}


def _duration(seconds: float) -> str:
    """A protobuf Duration in its JSON form ("0.010s", "30s")."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def cpu_text(cpus: float) -> str:
    """CPUs as a Kubernetes quantity ("2", "500m")."""
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def memory_text(size: int) -> str:
    """Bytes as a Kubernetes quantity the SDK's set_memory_limit accepts ("256Mi", "2G")."""
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("T", 10**12), ("G", 10**9), ("M", 10**6),
                         ("Ki", 2**10), ("K", 10**3)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
