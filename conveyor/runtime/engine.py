"""The engine: walks a graph, runs every step whose inputs are ready, caches, retries and resumes."""

from __future__ import annotations

import dataclasses
import logging
import traceback
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from conveyor.dsl.graph import Const, Expr, Graph, ListOf, Node, Ref
from conveyor.dsl.fanout import element_labels
from conveyor.errors import RunCancelled
from conveyor.runtime.cache import KeyParts, key_parts, parts_key
from conveyor.runtime.hooks import HookContext, call_hook
from conveyor.runtime.slots import MISSING, Slot, const_fingerprint, json_param, stored_from_record
from conveyor.runtime.worker import FromStore, FunctionRef, StepResult, StepTask
from conveyor.runtime.records import artifact_doc
from conveyor.store.metadata.records import NewArtifact, StepOutcome, new_artifact_id

DONE_OK = ("succeeded", "cached", "resumed")
_SETTLED = frozenset((*DONE_OK, "failed", "skipped"))
Observer = Callable[[str, str, dict[str, Any]], None]
log = logging.getLogger("conveyor.engine")


@dataclass(slots=True)
class _Call:
    """One call to run: a whole node, or one element of a mapped node."""

    node: Node
    name: str
    args: dict[str, Any]
    fingerprints: dict[str, Any]
    inputs: list[tuple[str, str, int | None]]
    params: list[tuple[str, Any]]
    map_index: int | None = None
    cache_key: str = ""
    step_run_id: str = ""
    parts: KeyParts | None = None
    attempts_done: int = 0     # attempts before the task now running (those that ended preempted, and earlier ones)
    failures: int = 0          # of those, the failed ones: they used up part of the step's retries
    preemptions: int = 0
    submitted: float = 0.0     # when its current task was handed to the executor


@dataclass
class Execution:
    """The state of one run's walk; kept so callers can read outputs from memory afterwards."""

    status: dict[str, str] = field(default_factory=dict)
    slots: dict[str, Any] = field(default_factory=dict)          # node -> {output: Slot} or [Slot] for maps
    first_failure: tuple[str, str, str] | None = None            # (node, error, traceback)


class Engine:
    """Runs graphs against a metadata store, an artifact store and an executor."""

    def __init__(self, metadata: Any, artifacts: Any, executor: Any, *, inline_max_bytes: int = 65536,
                 observer: Observer | None = None, actor: str = "unknown", shared_cache: Any = None,
                 accounting: bool = True, preempt_grace_s: float = 30.0, preemption_retries: int = 3) -> None:
        self.metadata = metadata
        self.shared_cache = shared_cache   # the cache index under a shared artifact root (runtime.records)
        self.artifacts = artifacts
        self.executor = executor
        self.inline_max_bytes = inline_max_bytes
        self.observer = observer or (lambda _e, _n, _i: None)
        self.actor = actor
        self.accounting = accounting   # measure every attempt and record it in step_attempts
        self.preempt_grace_s = preempt_grace_s
        self.preemption_retries = preemption_retries   # preempted attempts of one call run again, apart from retries

    # --- the walk -----------------------------------------------------------------------------

    def execute(self, graph: Graph, run_id: str, *, cache: bool = True,
                prior: Mapping[str, tuple[Any, dict[str, Any]]] | None = None,
                done: Mapping[str, tuple[str, Any]] | None = None, only: str | None = None,
                map_index: int | None = None, select: Callable[[int], bool] | None = None) -> Execution:
        """Run every node once; return the final state. Raises RunCancelled on Ctrl-C.

        ``done`` and ``only`` run one node of a run that others execute (an exported task): ``done``
        holds the finished upstream nodes as (status, slots), ``only`` the node to run, and
        ``map_index`` the one element of a mapped node to run, or ``select`` the elements to run
        (this host's share); all of them when neither is given.
        """
        self._run_id, self._cache, self._prior = run_id, cache, dict(prior or {})
        self._only_index = map_index
        self._select = (lambda i: i == map_index) if map_index is not None else select
        self._partial = map_index is not None or select is not None
        ex = self._ex = Execution()
        for name, (status, slots) in (done or {}).items():
            ex.status[name], ex.slots[name] = status, slots
        pending = dict(graph.nodes) if only is None else {only: graph.nodes[only]}
        upstream = {name: tuple(node.upstream()) for name, node in pending.items()}
        blocked: dict[str, str] = {}   # a pending node -> an upstream one it waited for when last looked at
        running: dict[Future[StepResult], _Call] = {}
        held: dict[str, deque[_Call]] = {}   # node -> ready calls waiting for room under its max_parallel
        maps: dict[str, list[Slot | None]] = {}
        self._graph = graph
        self._hits: dict[str, tuple[Any, dict[str, Any]] | None] = {}   # cache lookups done, by key; used once
        self._unwritten: list[tuple[str, str, str, StepOutcome, dict[str, Any]]] = []   # cached steps, see _write
        self._ended: list[tuple[str, str, StepOutcome]] = []   # step runs' ends, written with what follows
        self._ended_keys: set[str] = set()   # their cache keys: a lookup of one of them writes them first
        self._beginning: list[tuple[str, str, str, str, dict[str, Any]]] = []   # starts, written before submitting
        self._finished_since_wait = False   # a task finished since the walk last waited (see _publish)
        self._indexed: deque[tuple[str, dict[str, Any], dict[str, Any]]] = deque()   # shared cache entries to write
        if cache and only is None and not self._partial:
            # A re-run most likely hits what the pipeline's last run recorded: those keys in one query,
            # so a fully cached chain does not look up the cache once per step.
            self._hits.update(self.metadata.steps.find_cached_many(keys_of_last_run_before=run_id))
        for name in pending:
            self.observer("pending", name, {})
        try:
            while pending or running or held:
                progressed = True
                while progressed:   # reused (cached, resumed, skipped) nodes can unblock others at once
                    progressed = False
                    starting: list[tuple[Node, list[_Call]]] = []
                    for name in _ready(pending, upstream, ex.status, blocked):
                        node = pending.pop(name)
                        progressed = True
                        try:
                            candidates = self._start(node, maps)
                        except Exception as exc:  # a bad condition or map input: this node fails, others go on
                            self._fail_node(node, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                            continue
                        if candidates is not None:
                            starting.append((node, candidates))
                    self._look_up([c for _, cs in starting for c in cs])   # the ready calls' keys in one query
                    for node, candidates in starting:
                        try:
                            calls = self._started(node, candidates, maps)
                        except Exception as exc:
                            self._fail_node(node, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                            continue
                        for call in calls:
                            held.setdefault(call.node.name, deque()).append(call)
                self._release(held, running)
                self._write()   # before waiting: what finished is in the store while others run
                if not running:
                    for name in list(pending):   # cannot happen with graphs the DSL builds; never hang
                        self._skip(pending.pop(name), "unreachable")
                    break
                self._publish(running)
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                self._finished_since_wait = False
                for fut in done:
                    call = running.pop(fut)
                    result = _result_of(fut, call)
                    if result.status == "preempted" and self._preempted(call, result):
                        try:
                            running[self._submit(call)] = call   # again, from its last checkpoint
                            continue
                        except Exception as exc:   # the executor cannot take it (a pool that broke)
                            result = _lost(call, exc)
                    self._finish(call, result, maps)
        except KeyboardInterrupt:
            self._write()
            self._publish()
            self.executor.shutdown(cancel=True)
            if self.accounting:
                try:
                    self._cancelled_attempts(list(running.values()))
                except Exception:   # best effort: the run is marked cancelled below whatever happens
                    pass
            self.metadata.steps.mark_unfinished(run_id, "cancelled", "the run was interrupted")
            raise RunCancelled(f"Run {run_id} was interrupted and marked cancelled. "
                               f"Resume it with `conveyor runs resume {run_id}`.") from None
        finally:
            self._write()
            self._publish()   # only once their step runs are in the store: a failed write publishes nothing
        return ex

    def _write(self) -> None:
        """Record, in one transaction, the step runs that ended, the cached ones found and the starts
        of the calls about to be submitted, since the last call: a chain commits once a step (one
        step's end with the next one's start). Called before anything else is written, before a task
        is submitted and before the walk waits, so the store sees the steps in order, a running step
        is recorded as running before it runs, and an ended one as ended while the others run."""
        if not (self._ended or self._unwritten or self._beginning):
            return
        ended, records, starts = self._ended, self._unwritten, self._beginning
        self._ended, self._unwritten, self._beginning = [], [], []
        self._ended_keys.clear()
        steps = self.metadata.steps
        if hasattr(steps, "write_many"):
            steps.write_many(finished=ended, recorded=records, started=starts)
            return
        for step_run_id, run_id, outcome in ended:   # a store without batched writes
            steps.finish(step_run_id, run_id, outcome)
        if records:
            steps.record_many(records)
        for sid, run_id, name, step, kw in starts:
            steps.start(run_id, name, step, sid=sid, **kw)

    def _publish(self, running: Mapping[Future[StepResult], _Call] | None = None) -> None:
        """Write the shared cache index's entries of the steps that succeeded, after their step runs
        are in the store. The index only saves work, so it is written while the walk would wait:
        while ``running`` has tasks and none has finished since the last wait (all of them with no
        ``running``)."""
        while self._indexed:
            if running and self._finished_since_wait:
                return
            key, step, outputs = self._indexed.popleft()
            try:
                self.shared_cache.add(key, step, outputs)
            except Exception as exc:   # add warns of a store's errors itself; never fail a run for the index
                log.warning("the shared cache index entry of %s was not written (%s: %s)", step.get("name"),
                            type(exc).__name__, exc)

    def _release(self, held: dict[str, deque[_Call]], running: dict[Future[StepResult], _Call]) -> None:
        """Submit the held calls that fit: a mapped node with ``max_parallel`` runs that many at once.
        Their starts are written together, with whatever else waits to be written, then they are submitted."""
        if not held:
            return
        busy: dict[str, int] = {}
        for call in running.values():
            busy[call.node.name] = busy.get(call.node.name, 0) + 1
        ready: list[_Call] = []
        for name in list(held):
            queue = held[name]
            limit = queue[0].node.max_parallel
            room = len(queue) if limit is None else limit - busy.get(name, 0)
            for _ in range(min(room, len(queue))):
                ready.append(queue.popleft())
            if not queue:
                del held[name]
        for call in ready:
            self._begin(call)
        self._write()
        for call in ready:
            running[self._hand_over(call)] = call

    # --- starting nodes -----------------------------------------------------------------------

    def _start(self, node: Node, maps: dict[str, list[Slot | None]]) -> list[_Call] | None:
        """A ready node's calls, keyed but not yet looked up in the cache (see ``_started``); None when
        the node is done already (skipped, or a fan-out over nothing)."""
        ex = self._ex
        for up in sorted(node.upstream()):
            if ex.status[up] in ("failed", "skipped"):
                self._skip(node, f"upstream step '{up}' {ex.status[up]}")
                return None
        for cond in node.conditions:
            left, right = self._eval(cond.left), self._eval(cond.right)
            if not cond.evaluate(left, right):
                self._skip(node, f"condition not met: {cond.describe()} (value {left!r})")
                return None
        if not node.is_map:
            return [self._prepare(node, node.name, dict(node.inputs), None)]
        items = {k: self._elements(node.inputs[k]) for k in node.map_over}
        lengths = {k: len(v) for k, v in items.items()}
        if len(set(lengths.values())) > 1:
            self._fail_node(node, f"mapped inputs have different lengths: {lengths}; zip needs equal lengths", "")
            return []
        n = next(iter(lengths.values()))
        labels = element_labels(node.spec.name, node.name_by,
                                {k: [self._element_value(e) for e in v] for k, v in items.items()}) \
            if node.name_by is not None else None
        maps[node.name] = [None] * n
        ex.status[node.name] = "running"
        if n == 0 and not self._partial:   # recorded, so the run's record says it succeeded (a resume may follow a skip)
            self._write()
            self.metadata.steps.record(self._run_id, node.name, node.spec.name, StepOutcome(
                status="succeeded", attempts=0, reason="fan-out over an empty list: no elements ran"))
            self._complete_map(node.name, maps)
            return None
        calls = []
        for i in range(n):
            if self._select is not None and not self._select(i):
                continue
            inputs: dict[str, Any] = {k: (v if k not in items else items[k][i]) for k, v in node.inputs.items()}
            calls.append(self._prepare(node, f"{node.name}[{labels[i] if labels else i}]", inputs, i))
        return calls

    def _started(self, node: Node, candidates: list[_Call], maps: dict[str, list[Slot | None]]) -> list[_Call]:
        """Reuse what can be (resumed, cached) of a node's calls; the calls left to run."""
        if not node.is_map:
            return [c for c in candidates if not self._reuse(c)]
        ex = self._ex
        n = len(maps[node.name])
        calls = []
        for call in candidates:
            if self._reuse(call):
                maps[node.name][call.map_index] = self._ex.slots.pop(call.name)[node.spec.outputs[0]]
            else:
                calls.append(call)
        if self._partial:
            if self._only_index is not None and self._only_index >= n:
                raise IndexError(f"element {self._only_index} of '{node.name}' does not exist: it has {n} elements")
            ex.status[node.name] = "succeeded" if not calls else "running"   # these elements are this task's part
        elif all(s is not None for s in maps[node.name]):
            self._complete_map(node.name, maps)
        return calls

    def _element_value(self, element: Any) -> Any:
        """The value of one mapped element (for naming it)."""
        return self._value(element) if isinstance(element, Slot) else element.value

    def _elements(self, expr: Expr) -> list[Any]:
        """Split a mapped input into per-call input expressions (values or slots)."""
        if isinstance(expr, Const):
            return [Const(v) for v in expr.value]
        if isinstance(expr, Ref) and isinstance(self._ex.slots.get(expr.node), list) and not expr.path:
            return list(self._ex.slots[expr.node])
        value = self._eval(expr)
        if not isinstance(value, list | tuple):
            raise TypeError(f"cannot map over {type(value).__name__}; the mapped output must be a list")
        return [Const(v) for v in value]

    def _prepare(self, node: Node, name: str, inputs: dict[str, Any], index: int | None) -> _Call:
        call = _Call(node=node, name=name, args={}, fingerprints={}, inputs=[], params=[], map_index=index)
        for key, expr in inputs.items():
            call.args[key], call.fingerprints[key] = self._argument(call, key, expr, None)
        spec = node.spec
        uncached = None if spec.cache and self._cache else ("step" if not spec.cache else "run")
        params = {k for k, e in inputs.items() if isinstance(e, Const)}
        call.parts = key_parts(spec, call.fingerprints, params, lambda: self._resolved(call.args), uncached,
                               shown=dict(call.params))
        call.cache_key = parts_key(spec.name, call.parts)
        return call

    def _resolved(self, args: Any) -> Any:
        """Argument values as the function will see them (for a step's ``cache_key`` callable)."""
        if isinstance(args, FromStore):
            value = self.artifacts.get(args.stored)
            for p in args.path:
                value = value[p]
            return value
        if isinstance(args, dict):
            return {k: self._resolved(v) for k, v in args.items()}
        if isinstance(args, list):
            return [self._resolved(v) for v in args]
        return args

    def _argument(self, call: _Call, key: str, expr: Any, pos: int | None) -> tuple[Any, Any]:
        if isinstance(expr, Slot):   # one element of a mapped upstream
            call.inputs.append((key, expr.artifact_id, pos))
            return self._pass(expr, ()), expr.fingerprint()
        if isinstance(expr, Const):
            if pos is None:
                call.params.append((key, json_param(expr.value)))
            return expr.value, const_fingerprint(expr.value, self.artifacts)
        if isinstance(expr, ListOf):
            pairs = [self._argument(call, key, item, i) for i, item in enumerate(expr.items)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        held = self._ex.slots[expr.node]
        if isinstance(held, list):     # the list of a mapped step's outputs
            for i, slot in enumerate(held):
                call.inputs.append((key, slot.artifact_id, i))
            value = [self._pass(s, ()) for s in held]
            for p in expr.path:
                value = value[p]
            return value, {"list": [s.fingerprint() for s in held], "p": [repr(p) for p in expr.path]}
        slot = held[expr.output]
        call.inputs.append((key, slot.artifact_id, pos))
        return self._pass(slot, expr.path), slot.fingerprint(expr.path)

    def _pass(self, slot: Slot, path: tuple[Any, ...]) -> Any:
        """The argument as the executor wants it: the value in memory, or a load instruction."""
        if self.executor.in_process or slot.stored.uri is None:
            value = self._value(slot)
            for p in path:
                value = value[p]
            return value
        return FromStore(slot.stored, path)

    def _value(self, slot: Slot) -> Any:
        if slot.value is MISSING:
            slot.value = self.artifacts.get(slot.stored)
        return slot.value

    def _eval(self, expr: Expr) -> Any:
        if isinstance(expr, Const):
            return expr.value
        if isinstance(expr, ListOf):
            return [self._eval(e) for e in expr.items]
        held = self._ex.slots[expr.node]
        value = [self._value(s) for s in held] if isinstance(held, list) else self._value(held[expr.output])
        for p in expr.path:
            value = value[p]
        return value

    # --- reuse: resume and cache --------------------------------------------------------------

    def _reuse(self, call: _Call) -> bool:
        spec = call.node.spec
        prior = self._prior.get(call.name)
        if (prior is not None and prior[0].cache_key == call.cache_key and set(spec.outputs) <= set(prior[1])
                and self._intact(prior[1], spec.outputs)):
            self._adopt(call, prior[1], "resumed")
            return True
        if not (self._cache and spec.cache):
            return False
        if call.cache_key in self._hits:
            hit = self._hits.pop(call.cache_key)   # once: a later call with this key looks again
        else:
            hit = self.metadata.steps.find_cached(call.cache_key)
        shared = False
        if (hit is None or not self._usable(hit, spec.outputs)) and self.shared_cache is not None:
            hit, shared = self.shared_cache.find(call.cache_key), True   # written by a run elsewhere on this root
        if hit is None or not self._usable(hit, spec.outputs):
            return False
        record, outputs = hit
        if shared:   # that run's artifacts are not in this database: record them as this step run's outputs
            outputs = {n: dataclasses.replace(outputs[n], id=new_artifact_id()) for n in spec.outputs}
        at = time.time()
        self._unwritten.append((   # written with the other steps reused alongside it: see _write
            self._run_id, call.name, spec.name,
            StepOutcome(status="cached", attempts=0, cache_hit=True, cached_from=record.id,
                        reused_outputs=[] if shared else [(n, outputs[n].id) for n in spec.outputs],
                        new_outputs=[_new_artifact(n, outputs[n]) for n in spec.outputs] if shared else (),
                        inputs=call.inputs, params=call.params, started_at=at, ended_at=at),
            dict(cache_key=call.cache_key, code_hash=call.parts.code_digest if call.parts else spec.code_hash,
                 map_index=call.map_index, cache_parts=call.parts.to_json() if call.parts else None)))
        self._adopt(call, outputs, "cached")
        if call.map_index is None:
            self._hook(call.node, "on_success", "cached")
        return True

    def _look_up(self, calls: list[_Call]) -> None:
        """Look up the cache for these calls' keys in one query (``_reuse`` takes the answers)."""
        if not self._cache:
            return
        keys = {c.cache_key for c in calls if c.node.spec.cache and c.cache_key not in self._hits
                and not (c.name in self._prior and self._prior[c.name][0].cache_key == c.cache_key)}
        if not keys:
            return
        if keys & self._ended_keys:   # a step of this run that just ended answers one of them
            self._write()
        found = self.metadata.steps.find_cached_many(sorted(keys))
        for key in keys:
            self._hits[key] = found.get(key)

    def _usable(self, hit: tuple[Any, dict[str, Any]], names: tuple[str, ...]) -> bool:
        return set(names) <= set(hit[1]) and self._intact(hit[1], names)

    def _intact(self, outputs: dict[str, Any], names: tuple[str, ...]) -> bool:
        """Reuse outputs only while their bytes are in the artifact store: lost ones are recomputed."""
        return all(self.artifacts.exists(stored_from_record(outputs[n])) for n in names)

    def _adopt(self, call: _Call, outputs: dict[str, Any], status: str) -> None:
        slots = {n: Slot(outputs[n].id, stored_from_record(outputs[n])) for n in call.node.spec.outputs}
        self._ex.slots[call.name] = slots
        if call.map_index is None:
            self._ex.status[call.name] = status
        self.observer(status, call.name, {})

    # --- running and finishing ----------------------------------------------------------------

    def _submit(self, call: _Call) -> Future[StepResult]:
        self._begin(call)
        self._write()
        return self._hand_over(call)

    def _begin(self, call: _Call) -> None:
        """Give the call its step run, to be written as running (by ``_write``) before it is handed over."""
        if call.step_run_id:   # a call preempted before runs again under its step run
            return
        spec = call.node.spec
        call.step_run_id = new_artifact_id()   # the store's identifiers, made here
        self._beginning.append((call.step_run_id, self._run_id, call.name, spec.name, dict(
            cache_key=call.cache_key, code_hash=call.parts.code_digest if call.parts else spec.code_hash,
            map_index=call.map_index, cache_parts=call.parts.to_json() if call.parts else None)))

    def _hand_over(self, call: _Call) -> Future[StepResult]:
        spec = call.node.spec
        in_process = self.executor.in_process
        task = StepTask(
            run_id=self._run_id, step_run_id=call.step_run_id, node_name=call.name, step_name=spec.name,
            args=call.args, outputs=spec.outputs, multiple_outputs=spec.multiple_outputs,
            retries=max(0, spec.retries - call.failures),
            retry_on=spec.retry_on, backoff=spec.backoff, backoff_max=spec.backoff_max, timeout=spec.timeout,
            artifact_root=self.artifacts.root, inline_max_bytes=self.inline_max_bytes, map_index=call.map_index,
            metadata_url=self.metadata.url, actor=self.actor,
            fn=spec.fn if in_process else None,
            fn_ref=None if in_process else FunctionRef(spec.module, spec.qualname, spec.source_file),
            keep_values=in_process, resources=spec.requests, accounting=self.accounting,
            preempt_grace_s=self.preempt_grace_s, attempt_offset=call.attempts_done)
        if call.map_index is None:
            self._ex.status[call.name] = "running"
        self.observer("running", call.name, {})
        call.submitted = time.time()
        future = self.executor.submit(task)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: Future[StepResult]) -> None:
        self._finished_since_wait = True   # on the executor's thread: one assignment

    def _finish(self, call: _Call, result: StepResult, maps: dict[str, list[Slot | None]]) -> None:
        spec = call.node.spec
        new = [NewArtifact(name=n, content_hash=s.content_hash, materializer=s.materializer,
                           materializer_version=s.materializer_version, type_name=s.type_name, size=s.size,
                           uri=s.uri, inline=s.inline, meta=s.meta) for n, s in result.outputs.items()]
        logged = [NewArtifact(name=f"logged/{n}", content_hash=s.content_hash, materializer=s.materializer,
                              materializer_version=s.materializer_version, type_name=s.type_name, size=s.size,
                              uri=s.uri, inline=s.inline, meta=s.meta) for n, s in result.logged]
        over = result.status == "preempted"   # more often than preemption_retries allows
        if over:
            result.status = "failed"
            result.error = (f"{result.error} It was preempted {call.preemptions + 1} times, more than "
                            f"CONVEYOR_PREEMPTION_RETRIES={self.preemption_retries} allows.")
        self._ended.append((call.step_run_id, self._run_id, StepOutcome(
            status=result.status, attempts=call.attempts_done + result.attempts, error=result.error,
            traceback=result.traceback, preemptions=call.preemptions + over,
            logs=result.logs, new_outputs=new + logged, inputs=call.inputs, metrics=result.metrics,
            params=call.params + list(result.params.items()), started_at=result.started_at,
            ended_at=result.ended_at, attempt_rows=self._attempt_rows(call, result) if self.accounting else ())))
        info = {"duration": result.ended_at - result.started_at, "attempts": result.attempts}
        if result.status != "succeeded":
            self._fail_node(call.node, result.error or "failed", result.traceback or "", record=False)
            self.observer("failed", call.name, {**info, "error": result.error})
            return
        if spec.cache:
            self._ended_keys.add(call.cache_key)
        if self.shared_cache is not None and spec.cache:
            self._indexed.append((call.cache_key, {"id": call.step_run_id, "run_id": self._run_id, "name": call.name,
                                                   "step": spec.name, "status": "succeeded", "cache_key": call.cache_key,
                                                   "ended_at": result.ended_at},
                                  {a.name: artifact_doc(a) for a in new}))
        values = result.values or {}
        slots = {a.name: Slot(a.id, result.outputs[a.name], values.get(a.name, MISSING)) for a in new}
        if call.map_index is None:
            self._ex.slots[call.name] = slots
            self._ex.status[call.name] = "succeeded"
            self._hook(call.node, "on_success", "succeeded")
        else:
            holder = maps[call.node.name]
            holder[call.map_index] = slots[spec.outputs[0]]
            if self._partial:
                self._ex.slots[call.name] = slots
                if self._ex.status.get(call.node.name) != "failed":
                    self._ex.status[call.node.name] = "succeeded"
            elif all(s is not None for s in holder) and self._ex.status.get(call.node.name) == "running":
                self._complete_map(call.node.name, maps)
        self.observer("succeeded", call.name, info)

    def _cancelled_attempts(self, calls: list[_Call]) -> None:
        """A row for each attempt that was running when the run was interrupted (its measures stayed
        with the attempt: only its status and wall time)."""
        now = time.time()
        for call in calls:
            row = dict(attempt=call.attempts_done + 1, status="cancelled", executor=self.executor.name, host=None,
                       started_at=call.submitted, ended_at=now, wall_s=now - call.submitted, cpu_s=None,
                       peak_rss_bytes=None, bytes_read=None, bytes_written=None, gpu_s=None, gpu_peak_bytes=None,
                       error="the run was interrupted")
            self.metadata.steps.add_attempts(call.step_run_id, self._run_id, [row], attempts=call.attempts_done + 1,
                                             preemptions=call.preemptions)

    def _preempted(self, call: _Call, result: StepResult) -> bool:
        """Record a preempted task's attempts; True when the call is to run again (within preemption_retries)."""
        if call.preemptions >= self.preemption_retries:
            return False
        call.preemptions += 1
        self._write()
        self.metadata.steps.add_attempts(call.step_run_id, self._run_id,
                                         self._attempt_rows(call, result) if self.accounting else (),
                                         attempts=call.attempts_done + result.attempts, preemptions=call.preemptions)
        call.failures += result.attempts - 1   # the attempts before the preempted one failed
        call.attempts_done += result.attempts
        self.observer("preempted", call.name, {"attempts": call.attempts_done, "error": result.error})
        return True

    def _attempt_rows(self, call: _Call, result: StepResult) -> list[dict[str, Any]]:
        """The step_attempts rows of a result: measured where the attempts ran; an attempt that left no
        measure (its worker was lost, the executor refused the task) gets a row with its status only."""
        executor = self.executor.name
        measured = result.usage
        first = result.attempts - len(measured)   # attempts before these ones, not measured
        done = call.attempts_done
        rows = [dict(attempt=done + n, status="failed", executor=executor, host=None, started_at=result.started_at,
                     ended_at=result.ended_at if n == result.attempts else None, wall_s=None, cpu_s=None,
                     peak_rss_bytes=None, bytes_read=None, bytes_written=None, gpu_s=None, gpu_peak_bytes=None,
                     error=result.error if n == result.attempts else "the process running this attempt was lost")
                for n in range(1, first + 1)]
        for u in measured:   # numbered from the call's first attempt by the worker (attempt_offset)
            rows.append(dict(attempt=u.attempt + first, status=u.status, executor=executor, host=u.host,
                             started_at=u.started_at, ended_at=u.ended_at, wall_s=u.wall_s, cpu_s=u.cpu_s,
                             peak_rss_bytes=u.peak_rss_bytes, bytes_read=u.bytes_read, bytes_written=u.bytes_written,
                             gpu_s=u.gpu_s, gpu_peak_bytes=u.gpu_peak_bytes, error=u.error))
        return rows

    def _complete_map(self, name: str, maps: dict[str, list[Slot | None]]) -> None:
        self._ex.slots[name] = maps.pop(name)
        self._ex.status[name] = "succeeded"
        self.observer("succeeded", name, {"map": True})
        self._hook(self._graph.nodes[name], "on_success", "succeeded")

    def _fail_node(self, node: Node, error: str, traceback: str, *, record: bool = True) -> None:
        if self._ex.status.get(node.name) == "failed":
            return
        self._ex.status[node.name] = "failed"
        if self._ex.first_failure is None:
            self._ex.first_failure = (node.name, error, traceback)
        if record:
            self._write()
            self.metadata.steps.record(self._run_id, node.name, node.spec.name,
                                       StepOutcome(status="failed", error=error, traceback=traceback))
            self.observer("failed", node.name, {"error": error})
        self._hook(node, "on_failure", "failed", error)

    def _hook(self, node: Node, kind: str, status: str, error: str | None = None) -> None:
        hook = node.spec.on_success if kind == "on_success" else node.spec.on_failure
        if hook is not None:
            self._write()   # the hook may read the run: the cached steps found so far are in it
            call_hook(hook, HookContext(self._run_id, self._graph.name, node.name, status, error), kind=kind,
                      metadata=self.metadata)

    def _skip(self, node: Node, reason: str) -> None:
        self._ex.status[node.name] = "skipped"
        self._write()
        self.metadata.steps.record(self._run_id, node.name, node.spec.name,
                                   StepOutcome(status="skipped", reason=reason, attempts=0))
        self.observer("skipped", node.name, {"reason": reason})


def _ready(pending: Mapping[str, Node], upstream: Mapping[str, tuple[str, ...]], status: Mapping[str, str],
           blocked: dict[str, str]) -> list[str]:
    """The pending nodes whose upstream nodes are all settled. A node still waiting for the upstream
    node it waited for last time is passed over at once (a long chain looks at every pending node
    on every round)."""
    ready = []
    for name in pending:
        wait_for = blocked.get(name)
        if wait_for is not None and status.get(wait_for) not in _SETTLED:
            continue
        for up in upstream[name]:
            if status.get(up) not in _SETTLED:
                blocked[name] = up
                break
        else:
            ready.append(name)
    return ready


def _result_of(fut: Future[StepResult], call: _Call) -> StepResult:
    """The future's result; a failed result when the executor lost the task (a worker pool that broke)."""
    try:
        return fut.result()
    except Exception as exc:
        return _lost(call, exc)


def _lost(call: _Call, exc: BaseException) -> StepResult:
    now = time.time()
    error = (f"{type(exc).__name__}: the executor lost step '{call.name}' ({exc or 'its worker died'}); "
             "resume the run to run it again")
    return StepResult(status="failed", attempts=1, started_at=call.submitted or now, ended_at=now, error=error,
                      traceback=error + "\n", logs=error + "\n")


def _new_artifact(name: str, a: Any) -> NewArtifact:
    """An artifact record of another store as a new output of this step run (same bytes, new id)."""
    return NewArtifact(name=name, content_hash=a.content_hash, materializer=a.materializer,
                       materializer_version=a.materializer_version, type_name=a.type_name, size=a.size, uri=a.uri,
                       inline=a.inline, meta=a.meta or {}, id=a.id)
