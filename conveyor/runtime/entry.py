"""``python -m conveyor step exec``: one step of a run that an orchestrator schedules.

Every task of an exported pipeline runs this, in the image, with the node to run and the target's
execution id. It rebuilds the graph from the parameters, reads the records of the steps it waits
for (from the database, or beside the outputs when there is none), and hands the node to the same
engine a local run uses: the same cache key, reuse, retries, timeouts and records. Afterwards it
emits what the target decides on (gates and fan-out lists) and says with its exit status whether
the step succeeded (0), failed (1), could not be run as asked (2) or was preempted (143).

Preemption: a SIGTERM to this process (a spot instance taken back, a pod evicted) gives the running
attempt ``CONVEYOR_PREEMPT_GRACE_S`` to checkpoint (``cv.preempted()`` turns True; the next
``cv.checkpoint`` saves and ends it). The attempt is recorded ``preempted``, the step run is left
``cancelled`` (not final: the target's retry of the task runs the step again, from its last
checkpoint, since the checkpoint belongs to the run and the step) and the process exits 143, as a
process ended by SIGTERM does. A second SIGTERM, or one while no attempt runs, ends it at once.

It imports neither the CLI nor, without a database, SQLAlchemy: its fixed cost is what every
remote step pays.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from conveyor.errors import ConveyorError, PipelineDefinitionError, RunCancelled

DONE = ("succeeded", "cached", "resumed")
TERMINAL = (*DONE, "failed", "skipped", "cancelled")
USAGE, FAILED = 2, 1
PREEMPTED = 143   # 128 + SIGTERM: what the target sees of a container stopped by SIGTERM


@dataclass
class Outcome:
    """What one invocation did: the node's status, what it emits, and the exit code."""

    status: str
    emits: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0
    message: str = ""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conveyor step exec", description="Run one step of an exported pipeline.")
    p.add_argument("--project", default=".", help="the folder the pipeline reference is relative to")
    p.add_argument("--pipeline", required=True, help="FILE.py:NAME or module:NAME")
    p.add_argument("--node", required=True, help="the node (step call) to run")
    p.add_argument("--run-id", required=True, help="the orchestrator's execution id")
    p.add_argument("--shape", default="", help="the graph's shape at export; refused when it differs")
    p.add_argument("-p", "--param", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--map-index", default=None, help="the element of a mapped node, or 'all'")
    p.add_argument("--resume-from", default="", help="a run whose finished steps are reused")
    p.add_argument("--emit-dir", default=None, help="write each emitted value to DIR/<name>")
    p.add_argument("--emit-json", default=None, help="write the emitted values to FILE as one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Run, print what happened, exit with the outcome's code."""
    args = parser().parse_args(argv)
    try:
        outcome = run(args)
    except ConveyorError as exc:
        print(f"{exc.headline}: {exc.message}", file=sys.stderr)
        sys.stdout.flush()
        os._exit(exc.exit_code if exc.exit_code != 1 else FAILED)   # worker threads of the step never hold us up
    if outcome.message:
        print(outcome.message, file=sys.stderr if outcome.exit_code else sys.stdout)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(outcome.exit_code)


def run_id_of(text: str) -> str:
    """The Conveyor run id for an orchestrator's execution id: itself when it is a plain name, else a hash."""
    text = text.strip()
    if not text:
        raise PipelineDefinitionError("--run-id is empty: the target did not fill in its execution id.")
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", text):
        return text
    import hashlib

    return "x" + hashlib.sha256(text.encode()).hexdigest()[:15]


def run(args: argparse.Namespace) -> Outcome:
    """One invocation of the entry point (the part of ``main`` that does not exit)."""
    from conveyor.config import load_settings
    from conveyor.dsl.parameters import coerce_text_parameters
    from conveyor.export.plan import shape_of
    from conveyor.runtime.loader import load_pipeline
    from conveyor.runtime.worker import artifact_store

    project = Path(args.project).resolve()
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    target, _, attr = args.pipeline.rpartition(":")
    ref = f"{project / target}:{attr}" if target.endswith(".py") and not os.path.isabs(target) else args.pipeline
    pipeline = load_pipeline(ref)
    given = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise PipelineDefinitionError(f"-p {item!r} is not KEY=VALUE.")
        given[key] = value
    values = pipeline.resolve(coerce_text_parameters(pipeline.name, pipeline.parameters, given))
    graph = pipeline.build(**values)
    if args.shape and shape_of(graph) != args.shape:
        raise PipelineDefinitionError(
            f"Pipeline '{pipeline.name}' built with these parameters has another shape ({shape_of(graph)}) than the "
            f"exported definition ({args.shape}): a parameter changes which steps there are, or the code changed. "
            "Export the pipeline again (with these parameters as -p) and submit the new definition.")
    if args.node not in graph.nodes:
        raise PipelineDefinitionError(f"Pipeline '{pipeline.name}' has no step '{args.node}'. Its steps: "
                                      f"{', '.join(graph.nodes)}.")
    settings = load_settings()
    artifacts = artifact_store(settings.artifact_root, settings.inline_max_bytes)
    task = _Task(pipeline, graph, values, args.node, run_id_of(args.run_id), args.resume_from.strip(), settings,
                 artifacts, _selection(args.map_index))
    outcome = task.execute()
    _write_emits(outcome.emits, args.emit_dir, args.emit_json)
    return outcome


def _selection(text: str | None) -> int | None | Callable[[int], bool]:
    """The element(s) of a mapped node: one index, or all (this host's share with CONVEYOR_MAP_SHARD=K/N)."""
    if text is None or text == "":
        return None
    if text == "all":
        shard = os.environ.get("CONVEYOR_MAP_SHARD", "")
        if not shard:
            return lambda _i: True
        k, _, n = shard.partition("/")
        try:
            mine, hosts = int(k), int(n)
        except ValueError:
            raise PipelineDefinitionError(f"CONVEYOR_MAP_SHARD={shard!r} is not K/N (e.g. 0/4).") from None
        return lambda i: i % hosts == mine
    try:
        return int(text)
    except ValueError:
        raise PipelineDefinitionError(f"--map-index {text!r} is neither an element index nor 'all'.") from None


def _write_emits(emits: dict[str, Any], emit_dir: str | None, emit_json: str | None) -> None:
    if emit_dir:
        folder = Path(emit_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, value in emits.items():
            (folder / name).write_text(("true" if value else "false") if isinstance(value, bool)
                                       else orjson.dumps(value).decode())
    if emit_json:
        path = Path(emit_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(emits))


class _Stopping(KeyboardInterrupt):
    """Raised to the engine when it hands over a call after this process was told to stop: the
    engine ends the invocation as on Ctrl-C (unfinished step runs ``cancelled``, nothing final)."""


class _Inline:
    """The entry point's executor: each attempt in a child process of its own (stopped on timeout)."""

    name = "task"
    in_process = True

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="conveyor-task")
        self.stopping = False   # SIGTERM came and preempted the running attempts: start no other

    def submit(self, task: Any) -> Future[Any]:
        from conveyor.runtime.worker import run_task_isolated

        if self.stopping:   # the call preempted here runs again in the target's retry of the task
            raise _Stopping
        return self._pool.submit(run_task_isolated, task)

    def stop(self) -> None:
        """This process was told to stop (SIGTERM): start no attempt after the running ones."""
        self.stopping = True

    def shutdown(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class _Task:
    """One node of one run, with the stores it records to."""

    def __init__(self, pipeline: Any, graph: Any, values: dict[str, Any], node: str, run_id: str, resume_from: str,
                 settings: Any, artifacts: Any, select: int | None | Callable[[int], bool]) -> None:
        self.pipeline, self.graph, self.values, self.node = pipeline, graph, values, graph.nodes[node]
        self.run_id, self.resume_from, self.settings, self.artifacts = run_id, resume_from, settings, artifacts
        self.select = select
        self.database = bool(os.environ.get("CONVEYOR_METADATA_URL"))
        if self.database:
            from conveyor.store.metadata import MetadataStore, Reconnect

            self.metadata: Any = MetadataStore(settings.metadata_url, reconnect=Reconnect(
                retries=settings.metadata_retries, backoff_s=settings.metadata_backoff_s))
        else:
            from conveyor.runtime.records import RecordStore

            self.metadata = RecordStore(artifacts)

    # --- reading a run's records, from either store ---------------------------------------------

    def records(self, run_id: str) -> list[tuple[Any, dict[str, Any]]]:
        """Every step run of ``run_id`` with its outputs, oldest first."""
        if self.database:
            steps = self.metadata.steps.for_run(run_id)
            outputs = self.metadata.steps.outputs([s.id for s in steps])
            return [(s, outputs.get(s.id, {})) for s in steps]
        from conveyor.runtime.records import artifact_from_doc, step_from_doc

        out = []
        for d in self.metadata.records.steps(run_id):
            outs = {n: artifact_from_doc(a, run_id=d["run_id"], step_run_id=d["id"])
                    for n, a in (d.get("outputs") or {}).items()}
            self.metadata.steps.remember(outs)
            out.append((step_from_doc(d), outs))
        return sorted(out, key=lambda r: (r[0].started_at or 0, r[0].ended_at or 0))

    # --- the invocation -----------------------------------------------------------------------

    def execute(self) -> Outcome:
        from conveyor.export.plan import decisions, lower_graph
        from conveyor.runtime.checkpoint import preempting_children, wait_for_attempts

        self._ensure_run()
        records = self.records(self.run_id)
        latest = _latest(records)
        tasks = lower_graph(self.graph, {})
        me = tasks[self.node.name]
        index = self.select if isinstance(self.select, int) else None
        earlier = self._earlier(latest, index)
        if earlier is not None:
            return earlier
        done = self._upstream_state(latest, decisions(self.graph))
        prior = self._prior()
        seen: list[tuple[str, str]] = []
        engine = self._engine(lambda event, name, _info: seen.append((event, name)))
        select = None if isinstance(self.select, int) else self.select
        try:
            with preempting_children(engine.executor.stop):
                execution = engine.execute(self.graph, self.run_id, prior=prior, done=done, only=self.node.name,
                                           map_index=index, select=select)
        except RunCancelled:
            if not engine.executor.stopping:
                raise
            wait_for_attempts(self.settings.preempt_grace_s + 5.0)   # the other attempts checkpoint too
            return Outcome("preempted", {}, PREEMPTED,
                           f"Step '{self.node.name}' was preempted in run {self.run_id}: this process was told to "
                           "stop (SIGTERM). Its last checkpoint is kept; the next run of this task continues from it.")
        finally:
            engine.executor.shutdown()
        self._record_resumed(seen, prior)
        status = execution.status.get(self.node.name, "failed")
        mine = [e for e, n in seen if n.partition("[")[0] == self.node.name and e in ("cached", "resumed", "skipped")]
        if status == "succeeded" and mine and len(mine) == len([e for e, n in seen if n.partition("[")[0] ==
                                                                self.node.name and e != "pending"]):
            status = mine[-1]   # every call of this task was reused
        if execution.first_failure is not None:
            node, error, _tb = execution.first_failure
            self._set_run_status("failed", f"Step '{node}' failed: {error}")
            return Outcome("failed", self._emits(engine, me, status, tasks), FAILED,
                           f"Step '{node}' failed in run {self.run_id}: {error}")
        emits = self._emits(engine, me, status, tasks)
        self._finalise()
        return Outcome(status, emits, 0, f"{self.node.name}: {status}")

    def _engine(self, observer: Any) -> Any:
        from conveyor.runtime.engine import Engine

        shared = None
        if self.database and "://" in self.settings.artifact_root and not self.settings.artifact_root.startswith(
                "file://"):
            from conveyor.runtime.records import SharedCache

            shared = SharedCache(self.artifacts)
        workers = 1 if isinstance(self.select, int) or not self.node.is_map else self.settings.max_workers
        return Engine(self.metadata, self.artifacts, _Inline(workers), inline_max_bytes=self.settings.inline_max_bytes,
                      observer=observer, actor=self.settings.actor, shared_cache=shared,
                      accounting=self.settings.accounting,
                      preempt_grace_s=self.settings.preempt_grace_s,
                      preemption_retries=self.settings.preemption_retries)

    def _ensure_run(self) -> None:
        from conveyor.runtime.loader import pipeline_ref
        from conveyor.runtime.slots import json_param

        params = {k: json_param(v) for k, v in self.values.items()}
        doc = {"pipeline": self.pipeline.name, "pipeline_ref": pipeline_ref(self.pipeline), "parameters": params,
               "created_at": time.time(), "resume_from": self.resume_from or None}
        if not self.database:
            self.metadata.records.write_run(self.run_id, doc)
            return
        from conveyor.errors import Conflict, NotFound

        md = self.metadata
        try:
            md.runs.get(self.run_id)
            return
        except NotFound:
            pass
        import socket

        from conveyor.runtime.environment import python_environment

        pid, _ = md.runs.ensure_pipeline(self.pipeline.name, self.pipeline.code_hash(self.graph), doc["pipeline_ref"])
        try:
            md.runs.create(kind="pipeline", pipeline_id=pid, pipeline_name=self.pipeline.name,
                           pipeline_ref=doc["pipeline_ref"], parameters=params, tags={"exported": "true"},
                           environment_hash=md.runs.save_environment(python_environment()),
                           options={"cache": True, "executor": "export"}, pid=os.getpid(), host=socket.gethostname(),
                           run_id=self.run_id)
        except Conflict:
            pass   # another task of the run created it first

    def _earlier(self, latest: dict[str, tuple[Any, dict[str, Any]]], index: int | None) -> Outcome | None:
        """This node's record from an earlier invocation (the target retrying the task), if final."""
        if self.node.is_map and index is None:
            return None
        found = None
        for record, _outs in latest.values():
            same = record.name == self.node.name if not self.node.is_map else (
                record.name.partition("[")[0] == self.node.name and record.map_index == index)
            if same:
                found = record
        if found is None or found.status in ("running", "pending", "cancelled", "interrupted"):
            return None
        if found.status == "failed":
            return Outcome("failed", {}, FAILED,
                           f"Step '{found.name}' already failed for good in run {self.run_id} (after {found.attempts} "
                           f"attempts): {found.error}. The step's own retries are spent; fix it and resume the run.")
        return None   # done before: running again reuses it (and emits what it decides once more)

    def _upstream_state(self, latest: dict[str, tuple[Any, dict[str, Any]]],
                        gates: dict[str, tuple[Any, str]]) -> dict[str, tuple[str, Any]]:
        """(status, slots) of every node this one reads, from their records."""
        from conveyor.dsl.graph import refs_in
        from conveyor.runtime.slots import Slot, stored_from_record

        needed = set(self.node.upstream())
        for cond, decider in gates.values():
            if decider == self.node.name:
                needed.update(r.node for r in cond.refs())
        for expr in self.node.inputs.values():
            needed.update(r.node for r in refs_in(expr))
        needed.discard(self.node.name)
        state: dict[str, tuple[str, Any]] = {}
        for name in sorted(needed):
            node = self.graph.nodes[name]
            whole = latest.get(name)
            elements = sorted((r for r in latest.values() if r[0].name.partition("[")[0] == name
                               and r[0].map_index is not None), key=lambda r: r[0].map_index)
            if node.is_map and elements and (whole is None or (whole[0].ended_at or 0) < (elements[-1][0].started_at or 0)):
                bad = [r[0] for r in elements if r[0].status not in DONE]
                if bad:
                    raise PipelineDefinitionError(
                        f"Step '{self.node.name}' waits for '{name}', whose element {bad[0].name} is "
                        f"{bad[0].status} in run {self.run_id}: the target started this task too early.")
                state[name] = ("succeeded", [Slot(r[1][node.spec.outputs[0]].id,
                                                  stored_from_record(r[1][node.spec.outputs[0]])) for r in elements])
                continue
            if whole is None:
                raise PipelineDefinitionError(
                    f"Step '{self.node.name}' waits for '{name}', which has no record in run {self.run_id}: the target "
                    "started this task before that one finished, or that task wrote to another store. Check that "
                    "every task of the run has the same CONVEYOR_ARTIFACT_ROOT (and CONVEYOR_METADATA_URL).")
            record, outputs = whole
            if record.status in DONE:
                slots: Any = [] if node.is_map else {
                    n: Slot(outputs[n].id, stored_from_record(outputs[n])) for n in node.spec.outputs}
                state[name] = ("succeeded", slots)
            elif record.status in ("failed", "skipped"):
                state[name] = (record.status, {})
            else:
                raise PipelineDefinitionError(
                    f"Step '{self.node.name}' waits for '{name}', which is {record.status} in run {self.run_id}.")
        return state

    def _prior(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        if not self.resume_from:
            return {}
        return {r.name: (r, outs) for r, outs in (_latest(self.records(self.resume_from)) or {}).values()
                if r.status in ("succeeded", "cached")}

    def _record_resumed(self, seen: list[tuple[str, str]], prior: dict[str, tuple[Any, dict[str, Any]]]) -> None:
        """A step reused from the resumed run gets its own record in this run (the engine keeps none)."""
        from conveyor.store.metadata.records import StepOutcome

        for event, name in seen:
            if event != "resumed" or name not in prior:
                continue
            record, outputs = prior[name]
            self.metadata.steps.record(
                self.run_id, name, record.step, StepOutcome(
                    status="cached", attempts=0, cache_hit=True, cached_from=record.id,
                    reused_outputs=[(n, a.id) for n, a in outputs.items() if not n.startswith("logged/")],
                    reason=f"resumed from run {self.resume_from}"),
                cache_key=record.cache_key, map_index=record.map_index)

    def _emits(self, engine: Any, me: Any, status: str, tasks: dict[str, Any]) -> dict[str, Any]:
        """The gate booleans and fan-out lists this task hands to the target (false and [] unless it succeeded)."""
        from conveyor.export.plan import decisions
        from conveyor.store.metadata.records import StepOutcome

        ok = status in DONE
        out: dict[str, Any] = {}
        gates = decisions(self.graph)
        recorded = {n for n, r in _latest(self.records(self.run_id)).items() if r[0].status in TERMINAL}
        for emit in me.emits:
            if emit.kind == "boolean":
                cond, _decider = gates[emit.name]
                value = None
                if ok:
                    value = engine._eval(cond.left)
                    out[emit.name] = cond.evaluate(value, engine._eval(cond.right))
                else:
                    out[emit.name] = False
                if not out[emit.name]:
                    reason = (f"condition not met: {cond.describe()} (value {value!r})" if ok
                              else f"upstream step '{self.node.name}' {status}")
                    for t in tasks.values():
                        if any(g.output == emit.name for g in t.gates):
                            self._record_once(t.name, recorded, StepOutcome(status="skipped", reason=reason,
                                                                            attempts=0))
            else:
                mapped = self.graph.nodes[emit.name.removeprefix("fanout_")]
                n = 0
                if ok:
                    from conveyor.dsl.graph import Ref

                    key = next(k for k in mapped.map_over if isinstance(mapped.inputs[k], Ref)
                               and mapped.inputs[k].node == self.node.name)
                    n = len(engine._elements(mapped.inputs[key]))
                out[emit.name] = list(range(n))
                if ok and n == 0:
                    self._record_once(mapped.name, recorded, StepOutcome(
                        status="succeeded", attempts=0, reason="fan-out over an empty list: no elements ran"))
        return out

    def _record_once(self, name: str, recorded: set[str], outcome: Any) -> None:
        """Record ``name`` unless it has a final record (read once per invocation into ``recorded``)."""
        if name in recorded:
            return
        recorded.add(name)
        self.metadata.steps.record(self.run_id, name, self.graph.nodes[name].spec.name, outcome)

    def _set_run_status(self, status: str, error: str | None = None) -> None:
        if self.database:
            self.metadata.runs.set_status(self.run_id, status, error=error)

    def _finalise(self) -> None:
        """With a database: the run ends when every node has a final record (the last task to end sees it)."""
        if not self.database:
            return
        status = run_status(self.graph, _latest(self.records(self.run_id)))
        if status in ("succeeded", "failed"):
            record = self.metadata.runs.get(self.run_id)
            if record.status != status:
                self._set_run_status(status)


def _latest(records: list[tuple[Any, dict[str, Any]]]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The newest record of each node or element name (a final one over a running one)."""
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for r in records:
        held = out.get(r[0].name)
        if held is None or not (held[0].status in TERMINAL and r[0].status not in TERMINAL):
            out[r[0].name] = r
    return out


def run_status(graph: Any, latest: dict[str, tuple[Any, dict[str, Any]]]) -> str:
    """``succeeded`` when every node has a final, good record; ``failed`` when one failed; else ``running``."""
    final = True
    for name, node in graph.nodes.items():
        elements = [r[0] for r in latest.values() if r[0].name.partition("[")[0] == name and r[0].map_index is not None]
        statuses = [latest[name][0].status] if name in latest and not elements else [e.status for e in elements]
        if not statuses:
            final = False
            continue
        if "failed" in statuses:
            return "failed"
        if any(s not in TERMINAL for s in statuses):
            final = False
    return "succeeded" if final else "running"
