"""Ray: steps run as tasks on a Ray cluster that outlives runs; the engine stays on this driver.

Each step call is one Ray task running the same worker code as the local executors
(``run_task``, or ``run_task_isolated`` for a step with a timeout, so a timed-out attempt is
stopped). The worker writes the output bytes to the artifact root, as everywhere, and hands the
values back as Ray objects too: a downstream step on the cluster receives them from the object
store (no re-read from the artifact store), while cache, resume and lineage read the root.

Every metadata write stays on the driver. The connection to the cluster is made once per process
and reused by every run; a cluster is started only when the address is ``local``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from conveyor.config import Settings
from conveyor.errors import ConfigurationError
from conveyor.executors.ray_code import CodePackages
from conveyor.executors.ray_connect import connect, is_loopback, this_machine_addresses
from conveyor.runtime.worker import (FromStore, FunctionRef, StepResult, StepTask, preemptible_process, run_task,
                                     run_task_isolated)

# --- what the cluster has ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Node:
    """One alive node of the cluster: where it runs and what it has."""

    address: str
    hostname: str
    resources: dict[str, float]

    def on_this_machine(self, here: frozenset[str]) -> bool:
        return self.hostname in here or self.address in here or is_loopback(self.address)


def alive_nodes() -> list[Node]:
    """The cluster's alive nodes, as Ray reports them now."""
    return [Node(str(n.get("NodeManagerAddress", "")), str(n.get("NodeManagerHostname", "")),
                 {k: float(v) for k, v in (n.get("Resources") or {}).items()})
            for n in ray.nodes() if n.get("Alive")]


_UNITS = {"CPU": "CPU", "GPU": "GPU", "memory": "bytes of memory"}


def ray_requests(step: str, declared: dict[str, Any]) -> dict[str, float]:
    """A step's declared resources as Ray's names: ``CPU`` (1 unless declared), ``GPU``, ``memory`` (bytes), custom."""
    from conveyor.dsl.resources import parse_memory
    from conveyor.errors import PipelineDefinitionError

    out: dict[str, float] = {"CPU": float(declared.get("cpus", 1) if declared.get("cpus") is not None else 1)}
    for key, value in declared.items():
        if key == "gpus":
            out["GPU"] = float(value)
        elif key == "memory":
            try:
                out["memory"] = float(parse_memory(value, step))
            except PipelineDefinitionError as exc:
                raise ConfigurationError(str(exc)) from None
        elif key != "cpus":
            out[key] = float(value)
    return {k: v for k, v in out.items() if v > 0 or k == "CPU"}


def unmet_request(step: str, requests: dict[str, float], nodes: list[Node], address: str) -> str | None:
    """Why no node of the cluster can ever run this step, or None when one can."""
    wanted = {k: v for k, v in requests.items() if v > 0}
    if any(all(n.resources.get(k, 0.0) >= v for k, v in wanted.items()) for n in nodes):
        return None
    for key, amount in wanted.items():
        most = max((n.resources.get(key, 0.0) for n in nodes), default=0.0)
        if most < amount:
            unit = _UNITS.get(key, f"of custom resource {key!r}")
            hint = {"GPU": "remove gpus= from the step, or add a node with GPUs to the cluster",
                    "CPU": "lower cpus=, or add a larger node", "memory": "lower memory=, or add a larger node"}.get(
                key, f"remove {key!r} from the step's resources, or start a node with `ray start --resources "
                     f"'{{\"{key}\": {amount:g}}}'`")
            return (f"Step '{step}' asks for {amount:g} {unit}, but no node of the Ray cluster at {address} has "
                    f"{'that many' if most else 'any'} (the most one node has: {most:g}). It would wait for ever: "
                    f"{hint}.")
    return (f"Step '{step}' asks for {_describe(wanted)} on one node, but no node of the Ray cluster at {address} "
            "has all of it at once. Lower the step's resources, or add a node that has them together.")


def _describe(requests: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {_UNITS.get(k, k)}" for k, v in sorted(requests.items()))


def shared_root_problem(root: str, nodes: list[Node], shared_folder: bool) -> str | None:
    """Why the artifact root cannot be used from every node, or None.

    A local folder is shared when every alive node runs on this machine (its hostname or address
    is this machine's), or when the user declares it mounted at the same path everywhere.
    """
    if root.startswith("memory://"):
        return (f"The artifact root {root} lives in this process's memory; Ray workers cannot reach it. Set "
                "CONVEYOR_ARTIFACT_ROOT to s3://, gs://, az:// or a folder every node mounts at the same path.")
    if "://" in root and not root.startswith("file://") or shared_folder:
        return None
    here = this_machine_addresses()
    elsewhere = sorted({f"{n.hostname or '?'} ({n.address})" for n in nodes if not n.on_this_machine(here)})
    if not elsewhere:
        return None
    return (f"The artifact root {root} is a local folder, but the Ray cluster has nodes on other machines: "
            f"{', '.join(elsewhere)}. Their workers would write outputs where this driver cannot read them. Set "
            "CONVEYOR_ARTIFACT_ROOT to s3://, gs:// or az://, or, if the folder is mounted at the same path on every "
            "node, say so with CONVEYOR_RAY_SHARED_ROOT=1.")


def task_environment(settings: Settings) -> dict[str, Any]:
    """The runtime environment every task gets: CONVEYOR_RAY_RUNTIME_ENV, plus the variables workers need.

    Workers do not inherit this process's environment: the settings that govern what the worker
    code does (artifact retries, the pickle policy) go along, with the variables
    CONVEYOR_RAY_ENV_VARS names.
    """
    env: dict[str, Any] = json.loads(settings.ray_runtime_env or "{}")
    variables = {"CONVEYOR_ARTIFACT_RETRIES": str(settings.artifact_retries),
                 "CONVEYOR_ARTIFACT_BACKOFF_S": str(settings.artifact_backoff_s),
                 "CONVEYOR_ALLOW_PICKLE": settings.allow_pickle, **dict(settings.ray_env_vars)}
    env["env_vars"] = {**variables, **(env.get("env_vars") or {})}
    return env


# --- the task on the worker ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _FromObject:
    """An argument held in Ray's object store: the ``index``-th object passed to the task."""

    index: int
    path: tuple[Any, ...] = ()


def _fill(value: Any, objects: tuple[Any, ...]) -> Any:
    if isinstance(value, _FromObject):
        out = objects[value.index]
        for key in value.path:
            out = out[key]
        return out
    if isinstance(value, list) and any(isinstance(v, _FromObject) for v in value):
        return [_fill(v, objects) for v in value]
    return value


def run_on_worker(task: StepTask, isolated: bool, relative_source: str | None, *objects: Any) -> tuple[Any, ...]:
    """The Ray task: run the step with the worker code, return its result and its output values.

    Values come back as Ray objects of their own (one per output), so downstream tasks read them
    from the object store; inline outputs travel in the result and are not returned twice.
    """
    task.args = {k: _fill(v, objects) for k, v in task.args.items()}
    ref = task.fn_ref
    if relative_source and ref is not None and not (ref.source_file and Path(ref.source_file).exists()):
        # the file came in the task's runtime environment: the working directory (Ray's cwd) or a package
        # Ray put on sys.path
        for base in (os.getcwd(), *sys.path):
            if base and (Path(base) / relative_source).exists():
                task.fn_ref = FunctionRef(ref.module, ref.qualname, str(Path(base) / relative_source))
                break
    with preemptible_process(task.preempt_grace_s):   # SIGTERM to this worker: the step is preempted
        result = run_task_isolated(task) if isolated else run_task(task, own_process=True)
    values, result.values = result.values or {}, None
    returned = [values.get(name) if result.status == "succeeded" and result.outputs[name].uri is not None else None
                for name in task.outputs]
    return (result, *returned)


# --- the executor ------------------------------------------------------------------------------

_remote_lock = threading.Lock()
_remote: Any = None


def _remote_function() -> Any:
    global _remote
    with _remote_lock:
        if _remote is None:
            # retries are the step's own policy (the executor resubmits after a worker died), never Ray's
            _remote = ray.remote(max_retries=0, retry_exceptions=False)(run_on_worker)
        return _remote


_WORKER_LOST = ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "ObjectLostError", "OutOfMemoryError",
                "LocalRayletDiedError", "ObjectReconstructionFailedError")


@dataclass(slots=True)
class _Pending:
    """A step call on the cluster: its task, the future the engine waits on, its Ray refs, the crashes so far."""

    task: StepTask
    future: Future[StepResult]
    submitted: float
    requested: tuple[Any, ...] = ()   # the step's resources, sorted: a key of the checks and options made once
    refs: list[Any] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)
    timer: threading.Timer | None = None


class RayExecutor:
    """Runs steps as Ray tasks on a connected cluster; outputs pass between them through the object store."""

    name = "ray"
    in_process = False
    shutdown_timeout = 30.0   # seconds shutdown() waits for tasks in flight (none with cancel)

    def __init__(self, max_workers: int = 0, *, settings: Settings, address: str | None = None) -> None:
        # max_workers is the local executors' knob; the cluster's resources bound parallelism here
        self._settings = settings
        self.address = connect(address or settings.ray_address)
        self._nodes = alive_nodes()
        self._objects: dict[str, Any] = {}       # content hash -> ObjectRef of the value, for this run
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._checked: dict[Any, str | None] = {}
        self._options: dict[Any, Any] = {}       # (requests, returns, runtime env) -> the remote function's options
        self._plans: dict[Any, tuple[Any, str | None]] = {}   # (code, requests, returns) -> (options, relative file)
        self._code = CodePackages()
        self._extra_env = task_environment(self._settings)

    # --- submitting --------------------------------------------------------------------------

    def submit(self, task: StepTask) -> Future[StepResult]:
        future: Future[StepResult] = Future()
        future.set_running_or_notify_cancel()
        requested = tuple(sorted(task.resources.items())) if task.resources else ()
        problem = self._problem(task, requested)
        if problem is not None:
            future.set_result(_failed(task, "ConfigurationError", problem))
            return future
        pending = _Pending(task=task, future=future, submitted=time.time(), requested=requested)
        with self._lock:
            if self._closed:
                future.set_result(_failed(task, "RunCancelled", "the executor was shut down before the step started"))
                return future
            self._pending[id(pending)] = pending
        self._launch(pending)
        return future

    def _problem(self, task: StepTask, requested: tuple[Any, ...]) -> str | None:
        """A reason this task can never run on this cluster (checked once per root and per request)."""
        root = task.artifact_root
        if root not in self._checked:
            self._checked[root] = shared_root_problem(root, self._nodes, self._settings.ray_shared_root)
        if self._checked[root]:
            return self._checked[root]
        key = (task.step_name, requested)
        if key not in self._checked:
            try:
                requests = ray_requests(task.node_name, task.resources)
            except ConfigurationError as exc:
                return exc.message
            problem = unmet_request(task.node_name, requests, self._nodes, self.address)
            if problem is not None:   # a node may have joined since the run started: look again once
                self._nodes = alive_nodes()
                problem = unmet_request(task.node_name, requests, self._nodes, self.address)
            self._checked[key] = problem
        return self._checked[key]

    def _launch(self, pending: _Pending) -> None:
        task = pending.task
        objects: list[Any] = []

        def swap(value: Any) -> Any:
            if isinstance(value, FromStore):
                ref = self._objects.get(value.stored.content_hash)
                if ref is not None:
                    objects.append(ref)
                    return _FromObject(len(objects) - 1, value.path)
            elif isinstance(value, list) and any(isinstance(v, FromStore) for v in value):
                return [swap(v) for v in value]
            return value

        isolated = task.timeout is not None   # only a child process can be stopped at a timeout
        sent = dataclasses.replace(task, args={k: swap(v) for k, v in task.args.items()}, keep_values=not isolated,
                                   retries=max(0, task.retries - len(pending.lost)))
        try:
            remote, relative = self._plan(task, pending.requested)
            refs = remote.remote(sent, isolated, relative, *objects)
        except Exception as exc:   # bad options or an unpicklable argument: this step fails, the run goes on
            self._settle(pending, _failed(task, type(exc).__name__, str(exc)))
            return
        pending.refs = list(refs)
        pending.refs[0].future().add_done_callback(lambda fut: self._done(pending, fut, isolated))

    def _plan(self, task: StepTask, requested: tuple[Any, ...]) -> tuple[Any, str | None]:
        """The remote function with this step's options, and its file relative to the shipped folder.

        Made once per step function, requests and number of outputs in a run: every call of a
        mapped step, and every use of one step function in the pipeline, reuse it (the code's
        package, the runtime environment and Ray's options are not looked at again per call).
        """
        key = (task.fn_ref, requested, len(task.outputs))
        plan = self._plans.get(key)
        if plan is None:
            env, relative = self._code.runtime_env(task.fn_ref, self._extra_env)
            plan = self._plans[key] = (self._submit_options(task, requested, env), relative)
        return plan

    def _submit_options(self, task: StepTask, requested: tuple[Any, ...], env: dict[str, Any] | None) -> Any:
        key = (requested, len(task.outputs), repr(env))
        wrapper = self._options.get(key)
        if wrapper is None:
            requests = ray_requests(task.node_name, task.resources)
            custom = {k: v for k, v in requests.items() if k not in ("CPU", "GPU", "memory")}
            options: dict[str, Any] = {"num_cpus": requests["CPU"], "num_returns": 1 + len(task.outputs)}
            if "GPU" in requests:
                options["num_gpus"] = requests["GPU"]
            if "memory" in requests:
                options["memory"] = int(requests["memory"])
            if custom:
                options["resources"] = custom
            if env:
                options["runtime_env"] = env
            wrapper = self._options[key] = _remote_function().options(**options)
        return wrapper

    # --- results -------------------------------------------------------------------------------

    def _done(self, pending: _Pending, fut: Future[Any], isolated: bool) -> None:
        task = pending.task
        try:
            result: StepResult = fut.result()
        except BaseException as exc:   # the task itself did not return: the worker died, or it was cancelled
            kind = type(exc).__name__
            if kind in _WORKER_LOST and not self._closed:
                self._lost(pending, kind, exc)
            elif kind == "TaskCancelledError" or self._closed:
                self._settle(pending, _failed(task, "RunCancelled", "the step's task was cancelled on the cluster"))
            else:
                self._settle(pending, _failed(task, kind, _first_line(exc)))
            return
        if result.status == "succeeded" and not isolated:
            for i, name in enumerate(task.outputs):
                stored = result.outputs.get(name)
                if stored is not None and stored.uri is not None:
                    self._objects[stored.content_hash] = pending.refs[1 + i]
        if pending.lost:
            result.attempts += len(pending.lost)
            result.started_at = pending.submitted
            result.logs = "".join(pending.lost) + result.logs
        self._settle(pending, result)

    def _lost(self, pending: _Pending, kind: str, exc: BaseException) -> None:
        """The worker running the step died: retry it if the step's policy allows, as a failed attempt."""
        task = pending.task
        attempt = len(pending.lost) + 1
        retryable = issubclass(ChildProcessError, task.retry_on)
        why = (f"the Ray worker running step '{task.node_name}' died before it returned a result ({kind}: "
               f"{_first_line(exc)})")
        if attempt > task.retries or not retryable:
            result = _failed(task, "ChildProcessError", why)
            result.attempts = attempt
            result.logs = "".join(pending.lost) + result.logs
            self._settle(pending, result)
            return
        delay = min(task.backoff_max, task.backoff * (2 ** (attempt - 1)))
        pending.lost.append(f"[conveyor] attempt {attempt} of {task.retries + 1} failed: {why}; "
                            f"retrying in {delay:.2f}s\n")
        pending.timer = threading.Timer(delay, self._relaunch, args=(pending,))
        pending.timer.daemon = True
        pending.timer.start()

    def _relaunch(self, pending: _Pending) -> None:
        if self._closed:
            self._settle(pending, _failed(pending.task, "RunCancelled", "the executor was shut down before a retry"))
            return
        self._launch(pending)

    def _settle(self, pending: _Pending, result: StepResult) -> None:
        with self._lock:
            self._pending.pop(id(pending), None)
        if not pending.future.done():
            pending.future.set_result(result)

    # --- stopping ------------------------------------------------------------------------------

    def shutdown(self, cancel: bool = False) -> None:
        """Stop taking tasks; with ``cancel``, cancel the run's tasks on the cluster and return at once.

        Without ``cancel``, waits at most ``shutdown_timeout`` for tasks in flight. The connection
        stays open for the next run of this process; the run's objects are released.
        """
        with self._lock:
            self._closed = True
            pending = list(self._pending.values())
        if cancel:
            for item in pending:
                if item.timer is not None:
                    item.timer.cancel()
                for ref in item.refs[:1]:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True, recursive=True)
                self._settle(item, _failed(item.task, "RunCancelled", "the run was cancelled"))
        else:
            deadline = time.monotonic() + self.shutdown_timeout
            for item in pending:
                with contextlib.suppress(Exception):
                    item.future.result(timeout=max(0.0, deadline - time.monotonic()))
        self._objects.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failed(task: StepTask, kind: str, message: str) -> StepResult:
    now = time.time()
    error = f"{kind}: {message}"
    return StepResult(status="failed", attempts=1, started_at=now, ended_at=now, error=error,
                      traceback=error + "\n", logs=error + "\n")


__all__ = ["RayExecutor", "run_on_worker"]
