"""The plan: a pipeline's graph lowered to what every export target needs, and nothing else.

A plan is the one input of every exporter. It says which tasks there are (one per node), what
each waits for, which gates (conditions) and fan-outs it is under and where their values come
from at run time, the typed parameters, the resources, retries and deadlines, and the one command
each task runs in the image (``conveyor step exec``). Lowering checks what no target can express
and refuses it with a message that names the step, the construct and the workaround.

Run-time decisions are made by Conveyor's entry point, then handed to the target's own construct:
a task that *decides* a condition emits ``cond_<n>`` (a boolean), one that *sources* a fan-out
emits ``fanout_<node>`` (the JSON list of element indices). Targets compare and iterate over those
values natively (``dsl.If``, ``when``, Choice, ``ParallelFor``, ``withParam``, Map, ``expand``).
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.dsl.graph import Condition, Const, Graph, ListOf, Node, Ref
from conveyor.dsl.resources import parse_memory
from conveyor.errors import ExportError

ENTRY = ("-m", "conveyor", "step", "exec")   # after the interpreter
RESUME_PARAM = "conveyor_resume_from"   # the reserved parameter: a run id whose finished steps are reused
STARTUP_MARGIN_S = 600                  # what a task's deadline adds for pulling the image and starting


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One pipeline parameter as targets declare it."""

    name: str
    type: str                 # string | integer | number | boolean | json (a JSON text)
    default: Any              # the value at export (the declared default, or what -p gave)
    choices: tuple[Any, ...] = ()

    def text(self, value: Any | None = None) -> str:
        """A value as the text ``-p name=TEXT`` takes (JSON for json parameters)."""
        v = self.default if value is None else value
        if self.type == "json":
            return json.dumps(v, separators=(",", ":"))
        if self.type == "boolean":
            return "true" if v else "false"
        return "" if v is None else str(v)


@dataclass(frozen=True, slots=True)
class Gate:
    """A condition a task runs under: ``decider``'s entry point emits ``output`` (true or false)."""

    decider: str
    output: str
    describe: str


@dataclass(frozen=True, slots=True)
class FanOut:
    """Where a mapped task's element indices come from: emitted by ``source``, or known (``static``);
    ``max_parallel``: how many elements may run at once (``.map(max_parallel=N)``; None: no limit)."""

    source: str | None
    output: str | None
    static: tuple[int, ...] | None = None
    max_parallel: int | None = None


@dataclass(frozen=True, slots=True)
class Emit:
    """A value a task's entry point hands to the target after the step: a gate or a fan-out list."""

    name: str
    kind: str                 # boolean | list
    describe: str


@dataclass(frozen=True, slots=True)
class Task:
    """One node of the graph as a task of the target."""

    name: str
    step: str
    upstream: tuple[str, ...]
    gates: tuple[Gate, ...] = ()
    fan_out: FanOut | None = None
    emits: tuple[Emit, ...] = ()
    retries: int = 0
    backoff: float = 0.5
    backoff_max: float = 30.0
    timeout: float | None = None
    cpus: float | None = None
    memory: str | None = None
    gpus: int | None = None
    instance_type: str | None = None
    cache: bool = True
    preemptible: bool = False       # @step(preemptible=True): the target may run it on spot capacity

    @property
    def deadline_s(self) -> int | None:
        """The whole task's limit for the target: every attempt, every backoff, plus start-up."""
        if self.timeout is None:
            return None
        waits = sum(min(self.backoff_max, self.backoff * 2 ** i) for i in range(self.retries))
        return int(self.timeout * (self.retries + 1) + waits) + STARTUP_MARGIN_S

    @property
    def memory_bytes(self) -> int | None:
        """``memory`` ("512Mi", "2G", "1.5GiB", bytes) in bytes."""
        return None if self.memory is None else parse_memory(self.memory, self.name)


@dataclass(frozen=True)
class Plan:
    """A pipeline lowered for export; ``tasks`` are in a topological order."""

    pipeline: str
    ref: str                      # how the image finds the pipeline: "relative/file.py:name" or "module:name"
    project_dir: str              # where the project lives at run time (the ref is relative to it)
    image: str
    params: tuple[ParamSpec, ...]
    tasks: Mapping[str, Task]
    shape: str
    resume_from: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    python: str = "python"        # the interpreter that runs tasks (the image's; a path for local runners)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def downstream(self, name: str) -> tuple[str, ...]:
        """Tasks that wait for ``name``."""
        return tuple(t.name for t in self if name in t.upstream)

    def param(self, name: str) -> ParamSpec:
        return next(p for p in self.params if p.name == name)

    def command(self, task: Task, *, run_id: str, params: Mapping[str, str] | None = None,
                map_index: str | None = None, resume_from: str | None = None,
                emit_dir: str | None = None, emit_json: str | None = None) -> list[str]:
        """The entry point's argv for one task, with the target's placeholders as the values.

        ``params`` maps a parameter name to the target's placeholder of it (by default each task
        passes every parameter, since the graph is rebuilt from all of them); ``map_index`` is the
        placeholder of the element index inside a fan-out.
        """
        argv = [self.python, *ENTRY, "--project", self.project_dir, "--pipeline", self.ref, "--node", task.name,
                "--run-id", run_id, "--shape", self.shape]
        for p in self.params:
            value = (params or {}).get(p.name)
            argv += ["-p", f"{p.name}={p.text() if value is None else value}"]
        if map_index is not None:
            argv += ["--map-index", map_index]
        if resume_from is not None:
            argv += ["--resume-from", resume_from]
        if emit_dir is not None:
            argv += ["--emit-dir", emit_dir]
        if emit_json is not None:
            argv += ["--emit-json", emit_json]
        return argv

    def check(self) -> None:
        """Refuse a plan whose tasks name missing tasks or form a cycle (hand-made or edited plans)."""
        check_tasks(self.tasks)


def check_tasks(tasks: Mapping[str, Task]) -> None:
    """Every upstream, decider and fan-out source exists, and the dependencies are acyclic."""
    for t in tasks.values():
        named = [*t.upstream, *(g.decider for g in t.gates)]
        if t.fan_out is not None and t.fan_out.source is not None:
            named.append(t.fan_out.source)
        for other in named:
            if other not in tasks:
                raise ExportError(f"Task '{t.name}' depends on '{other}', which is not a task of this plan. "
                                  "Export the pipeline again from its source instead of editing the plan.")
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ExportError(f"The tasks form a cycle: {' -> '.join(cycle)}. A pipeline's steps must not wait "
                              "for each other in a circle; remove one of these dependencies.")
        state[name] = 1
        for up in tasks[name].upstream:
            visit(up, [*path, name])
        state[name] = 2

    for name in tasks:
        visit(name, [])


# --- lowering ----------------------------------------------------------------------------------

def lower(pipeline: Any, params: Mapping[str, Any] | None = None, *, ref: str, project_dir: str, image: str,
          from_text: bool = True, resume_from: str = "", env: Mapping[str, str] | None = None,
          instance_types: Mapping[str, str] | None = None, python: str = "python") -> Plan:
    """Build the pipeline's graph with ``params`` and lower it to a plan.

    ``instance_types`` maps a step name (or ``"*"``) to the target's instance type for it.
    """
    values = pipeline.resolve(dict(params or {}), from_text=from_text)
    graph = pipeline.build(**values)
    specs = tuple(_param_spec(p, values[p.name]) for p in pipeline.parameters.values())
    if any(p.name == RESUME_PARAM for p in specs):
        raise ExportError(f"Pipeline '{pipeline.name}' has a parameter named {RESUME_PARAM}, a name the export "
                          "reserves for resuming a run. Rename that parameter.")
    tasks = lower_graph(graph, instance_types or {})
    check_tasks(tasks)
    return Plan(pipeline=pipeline.name, ref=ref, project_dir=project_dir, image=image, params=specs, tasks=tasks,
                shape=shape_of(graph), resume_from=resume_from, env=dict(env or {}), python=python)


def decisions(graph: Graph) -> dict[str, tuple[Condition, str]]:
    """Each gate's emitted name -> (the condition, its decider), numbered as ``lower_graph`` numbers them."""
    out: dict[str, tuple[Condition, str]] = {}
    seen: set[Condition] = set()
    for name in topological(graph):
        node = graph.nodes[name]
        for cond in node.conditions:
            if cond not in seen:
                seen.add(cond)
                out[f"cond_{len(out)}"] = (cond, _decider(graph, node, cond))
    return out


def lower_graph(graph: Graph, instance_types: Mapping[str, str]) -> dict[str, Task]:
    """One task per node, in a topological order, with gates and fan-outs resolved to their sources."""
    order = topological(graph)
    gates: dict[str, tuple[Gate, ...]] = {}
    fan_outs: dict[str, FanOut] = {}
    emits: dict[str, list[Emit]] = {n: [] for n in order}
    decided: dict[Condition, Gate] = {}
    for name in order:
        node = graph.nodes[name]
        own: list[Gate] = []
        for cond in node.conditions:
            if cond not in decided:
                decider = _decider(graph, node, cond)
                gate = Gate(decider, f"cond_{len(decided)}", cond.describe())
                decided[cond] = gate
                emits[decider].append(Emit(gate.output, "boolean", f"{gate.describe} (for '{name}')"))
            own.append(decided[cond])
        inherited = [g for up in sorted(node.upstream()) for g in gates[up]]
        gates[name] = tuple(dict.fromkeys([*inherited, *own]))   # ordered, without repeats
        if node.is_map:
            fan_outs[name] = fan = _fan_out(graph, node, fan_outs)
            if fan.source is not None and fan.output == f"fanout_{name}":
                emits[fan.source].append(Emit(fan.output, "list", f"the elements of '{name}'"))
    tasks: dict[str, Task] = {}
    for name in order:
        node = graph.nodes[name]
        spec = node.spec
        tasks[name] = Task(
            name=name, step=spec.name, upstream=tuple(sorted(node.upstream())), gates=gates[name],
            fan_out=fan_outs.get(name), emits=tuple(emits[name]), retries=spec.retries, backoff=spec.backoff,
            backoff_max=spec.backoff_max, timeout=spec.timeout, cpus=spec.cpus, memory=spec.memory, gpus=spec.gpus,
            instance_type=instance_types.get(spec.name, instance_types.get("*")), cache=spec.cache,
            preemptible=spec.preemptible)
        if spec.memory is not None:
            parse_memory(spec.memory, name)
    return tasks


def _decider(graph: Graph, node: Node, cond: Condition) -> str:
    """The one task whose entry point can evaluate ``cond``: the latest of the nodes it reads."""
    readers = list(dict.fromkeys(r.node for r in cond.refs()))
    for r in readers:
        if graph.nodes[r].is_map:
            raise ExportError(
                f"Step '{node.name}': its condition `{cond.describe()}` reads the fanned-out step '{r}'. Exported "
                "targets decide a condition in one task, and a fan-out is many tasks. Add a join step that takes the "
                f"list of '{r}' outputs and returns the value to compare, and use cv.when() on that.")
    for candidate in readers:
        if all(other == candidate or other in ancestors(graph, candidate) for other in readers):
            return candidate
    raise ExportError(
        f"Step '{node.name}': its condition `{cond.describe()}` compares outputs of steps that do not wait for "
        f"each other ({', '.join(readers)}), so no single task of the target can decide it. Compute the comparison "
        "in one step that takes both outputs, and use cv.when() on that step's output.")


def _fan_out(graph: Graph, node: Node, known: Mapping[str, FanOut]) -> FanOut:
    """Where the element list of a mapped node comes from at run time."""
    sources: set[tuple[str | None, str | None]] = set()
    static: int | None = None
    for key in node.map_over:
        expr = node.inputs[key]
        if isinstance(expr, Const):
            static = len(expr.value)
            continue
        if not isinstance(expr, Ref):
            raise ExportError(f"Step '{node.name}': mapped input '{key}' is neither a list nor one step output.")
        upstream = graph.nodes[expr.node]
        if upstream.is_map and not expr.path:
            upstream_fan = known[expr.node]
            if upstream_fan.source is None:
                static = len(upstream_fan.static or ())
            else:
                sources.add((upstream_fan.source, upstream_fan.output))
            continue
        if upstream.is_map:
            raise ExportError(
                f"Step '{node.name}': mapped input '{key}' indexes into the fanned-out step '{expr.node}'. Map over "
                f"the list of '{expr.node}' outputs as a whole, or add a join step that returns the list to map over.")
        sources.add((expr.node, f"fanout_{node.name}"))
    if len(sources) > 1:
        names = ", ".join(sorted(s for s, _ in sources if s))
        raise ExportError(
            f"Step '{node.name}': its mapped inputs come from different steps ({names}). Targets iterate over one "
            "list per fan-out: return the lists zipped from one step and map over that output.")
    if sources:
        source, output = next(iter(sources))
        return FanOut(source=source, output=output, max_parallel=node.max_parallel)
    return FanOut(source=None, output=None, static=tuple(range(static or 0)), max_parallel=node.max_parallel)


def ancestors(graph: Graph, name: str) -> set[str]:
    """Every node ``name`` waits for, directly or not."""
    seen: set[str] = set()
    stack = list(graph.nodes[name].upstream())
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(graph.nodes[n].upstream())
    return seen


def topological(graph: Graph) -> list[str]:
    """Node names with every node after all it waits for (stable: definition order among equals)."""
    done: list[str] = []
    placed: set[str] = set()
    remaining = list(graph.nodes)
    while remaining:
        ready = [n for n in remaining if graph.nodes[n].upstream() <= placed]
        if not ready:
            raise ExportError(f"The steps {', '.join(remaining)} wait for each other in a cycle; remove one "
                              "of these dependencies.")
        for n in ready:
            done.append(n)
            placed.add(n)
        remaining = [n for n in remaining if n not in placed]
    return done


def shape_of(graph: Graph) -> str:
    """A hash of the graph's structure (names, steps, edges, fan-outs, conditions), not of its values.

    The entry point rebuilds the graph from the run's parameters; if they change its structure
    (a parameter that adds steps), the exported definition no longer matches and the task refuses.
    """
    def expr_shape(e: Any) -> Any:
        if isinstance(e, Ref):
            return ["ref", e.node, e.output, [repr(p) for p in e.path]]
        if isinstance(e, ListOf):
            return ["list", [expr_shape(i) for i in e.items]]
        return ["const"]

    nodes = []
    for name, node in sorted(graph.nodes.items()):
        nodes.append([name, node.spec.name, sorted(node.upstream()), list(node.map_over),
                      {k: expr_shape(v) for k, v in sorted(node.inputs.items())},
                      [[expr_shape(c.left), c.op, expr_shape(c.right)] for c in node.conditions],
                      sorted(node.after)])
    return hashlib.sha256(json.dumps(nodes, sort_keys=True).encode()).hexdigest()[:16]


def _param_spec(p: Any, value: Any) -> ParamSpec:
    kind, choices = param_type(p.annotation)
    return ParamSpec(name=p.name, type=kind, default=value, choices=choices)


def param_type(annotation: Any) -> tuple[str, tuple[Any, ...]]:
    """The target-neutral type of an annotation, and its choices for a Literal."""
    a = annotation
    origin, args = typing.get_origin(a), typing.get_args(a)
    if origin in (typing.Union, types.UnionType):
        arms = [x for x in args if x is not type(None)]
        return param_type(arms[0]) if len(arms) == 1 and len(args) == 1 else ("json", ())
    if origin is typing.Literal:
        kinds = {param_type(type(x))[0] for x in args}
        return (kinds.pop() if len(kinds) == 1 else "json"), tuple(args)
    return {bool: ("boolean", ()), int: ("integer", ()), float: ("number", ()), str: ("string", ())}.get(
        a, ("json", ()))
