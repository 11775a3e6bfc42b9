"""Dask distributed: steps run as tasks on a Dask cluster that outlives runs (``CONVEYOR_EXECUTOR=dask``).

The driver connects once per process to ``DASK_SCHEDULER_ADDRESS`` and reuses that connection for
every run (without an address, it starts one local cluster for the process). A task runs the same
worker code as the process executor, ``run_task_isolated``: every attempt in a child process that
the Dask worker forks, stopped with everything it started on a timeout, its output captured into
the step's log. The engine and every metadata write stay on the driver; values pass through the
artifact store, which the driver and the workers must share (a shared folder, ``s3://``, ``gs://``,
``az://``).

Placement: a step's ``cpus``, ``memory`` and ``gpus`` become the Dask worker resources ``CPU``,
``MEMORY`` (bytes) and ``GPU`` when the cluster's workers declare them
(``dask worker <address> --resources "GPU=1,CPU=8"``); a step asking for more than any worker
declares is refused when it is submitted, naming the step and the resource. ``cpus`` and
``memory`` that no worker declares are not constraints (Dask schedules by threads then); ``gpus``
that no worker declares are refused, since the step would otherwise land on a machine without one.

Flow: the executor hands the cluster at most as many tasks at once as its workers have threads and
keeps the rest itself, so every task it sends can start on a free thread. (Given more, Dask places
them eagerly, and a ready step can wait behind a long one on a busy worker while another worker
idles, since work stealing trusts the short durations it measured.)

Cancellation: ``shutdown(cancel=True)`` (Ctrl-C) cancels the run's futures; a watcher next to each
running task sees the scheduler cancel it, or release it because the driver disconnected or died,
and stops its attempt with every process it started.

Preemption: a SIGTERM to a worker process that runs attempts (a spot instance taken back, a pod
evicted) gives each attempt ``CONVEYOR_PREEMPT_GRACE_S`` to checkpoint. In a container, run the
worker with ``--no-nanny`` so that it is the process the signal reaches; with a nanny the signal
reaches the nanny, which closes its worker the way Dask does (a lost task, run again). The
attempt ends ``preempted``, its task returns that, and the engine runs the call again (another
task, under a new key), from its last checkpoint. A second SIGTERM, or one while no attempt runs,
does what it did before (Dask's own shutdown, or the default: the process ends).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from conveyor.config import Settings
from conveyor.dsl.resources import parse_memory
from conveyor.errors import ConfigurationError, PipelineDefinitionError
from conveyor.runtime.checkpoint import preempting_handler
from conveyor.runtime.worker import Cancellation, StepResult, StepTask, run_task_isolated

# @step hint -> the Dask worker resource it asks for
RESOURCE_NAMES = {"cpus": "CPU", "memory": "MEMORY", "gpus": "GPU"}

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_local_cluster: Any = None


def connect(address: str | None, local_workers: int = 2) -> Any:
    """The process's Dask client for ``address`` (a local cluster when None), connected once and reused."""
    global _local_cluster
    from distributed import Client

    with _clients_lock:
        key = address or "local"
        client = _clients.get(key)
        if client is not None and client.status == "running":
            return client
        if address is None:
            if _local_cluster is None:
                from distributed import LocalCluster

                _local_cluster = LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True,
                                              host="127.0.0.1", dashboard_address=None)
            address = _local_cluster.scheduler_address
        try:
            client = Client(address, set_as_default=False, timeout=30)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot reach the Dask scheduler at {address} ({exc}). Check DASK_SCHEDULER_ADDRESS "
                "(e.g. tcp://scheduler:8786) and that the scheduler runs, or unset it to start a local cluster."
            ) from None
        _clients[key] = client
        return client


def _memory(text: Any, step: str) -> int:
    try:
        return parse_memory(text, step)
    except PipelineDefinitionError as exc:   # met at submission: the cluster's configuration is what is refused
        raise ConfigurationError(exc.message) from None


def worker_resources(task: StepTask, declared: list[dict[str, float]], address: str) -> dict[str, float]:
    """The Dask resources a task asks for, checked against what the cluster's workers declare."""
    wanted: dict[str, float] = {}
    for hint, amount in task.resources.items():
        name = RESOURCE_NAMES.get(hint, hint)
        value = float(_memory(amount, task.node_name) if hint == "memory" else amount)
        if value <= 0:
            continue
        having = [w[name] for w in declared if name in w]
        if not having:
            if hint in ("cpus", "memory"):
                continue    # not declared by the cluster: not a constraint
            raise ConfigurationError(
                f"Step '{task.node_name}' asks for {hint}={amount!r}, but no worker of the Dask cluster at "
                f"{address} declares the resource {name!r}. Start workers that have it with "
                f"`dask worker {address} --resources \"{name}=<amount>\"`, or drop {hint}= from the step.")
        if value > max(having):
            raise ConfigurationError(
                f"Step '{task.node_name}' asks for {hint}={amount!r} ({name}={value:g}), more than any worker of "
                f"the Dask cluster at {address} has (at most {name}={max(having):g}). Ask for less, or add a "
                "larger worker.")
        wanted[name] = value
    return wanted


def _refused(task: StepTask, error: str) -> StepResult:
    now = time.time()
    return StepResult(status="failed", attempts=0, started_at=now, ended_at=now, error=error, traceback="",
                      logs=error + "\n")


class DaskExecutor:
    """Runs steps as tasks on a Dask distributed cluster, each attempt isolated in its own child process."""

    name = "dask"
    in_process = False
    cancel_wait = 10.0    # seconds ``shutdown(cancel=True)`` waits for the scheduler to confirm
    refresh_s = 5.0       # seconds between looks at the cluster's workers

    def __init__(self, max_workers: int = 2, *, settings: Settings, address: str | None = None) -> None:
        self.address = address or settings.dask_scheduler_address
        self._client = connect(self.address, local_workers=max_workers)
        self._futures: dict[str, Any] = {}      # this executor's (this run's) Dask futures by key
        self._lock = threading.Lock()
        self._waiting: deque[tuple[StepTask, Future[StepResult], dict[str, float]]] = deque()
        self._declared: list[dict[str, float]] = []
        self._threads = 0
        self._looked_at = float("-inf")
        self._closed = False
        self._cancelled = False

    def _look_at_workers(self) -> None:
        """What the workers declare and how many threads they have (looked up again every few seconds,
        so workers that join or leave are seen)."""
        if time.monotonic() - self._looked_at < self.refresh_s:
            return
        try:
            info = self._client.scheduler_info(n_workers=-1)   # every worker, not the first few
        except TypeError:   # distributed before 2025 lists every worker without being asked
            info = self._client.scheduler_info()
        workers = info.get("workers", {}).values()
        self._declared = [dict(w.get("resources") or {}) for w in workers]
        self._threads = sum(int(w.get("nthreads") or 1) for w in workers)
        self._looked_at = time.monotonic()

    def submit(self, task: StepTask) -> Future[StepResult]:
        out: Future[StepResult] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("this Dask executor was shut down; start a new run")
            self._look_at_workers()
            try:
                resources = worker_resources(task, self._declared, self.address or "(local)") \
                    if task.resources else {}
            except ConfigurationError as exc:
                out.set_result(_refused(task, str(exc)))
                return out
            self._waiting.append((task, out, resources))
            self._send()
        return out

    def _send(self) -> None:
        """Hand waiting tasks to the cluster while it has a free thread for each (called under the lock)."""
        while self._waiting and len(self._futures) < max(1, self._threads):
            task, out, resources = self._waiting.popleft()
            # a call that runs again after a preemption keeps its step run: the attempt makes the key new
            key = f"conveyor-{task.step_name}-{task.step_run_id}-{task.attempt_offset}"
            try:
                fut = self._client.submit(run_on_worker, task, key=key, pure=False, retries=0,
                                          resources=resources or None)
            except Exception as exc:   # the task cannot be sent (it does not pickle, the connection is gone)
                out.set_result(_refused(task, f"Step '{task.node_name}' could not be sent to the Dask cluster: "
                                              f"{type(exc).__name__}: {exc}"))
                continue
            self._futures[key] = fut
            fut.add_done_callback(lambda f, task=task, out=out: self._resolve(out, task, f))

    def _resolve(self, out: Future[StepResult], task: StepTask, fut: Any) -> None:
        """Hand the Dask future's outcome to the engine's future; never leave it unresolved."""
        with self._lock:
            self._futures.pop(fut.key, None)
            if time.monotonic() - self._looked_at >= self.refresh_s:
                try:
                    self._look_at_workers()
                except Exception:   # the scheduler went away: what follows fails on its own
                    pass
            self._send()
        try:
            if fut.status == "finished":
                result = fut.result()
            elif fut.status == "cancelled":
                result = _refused(task, f"Step '{task.node_name}' was cancelled on the Dask cluster.")
            else:
                exc = fut.exception()
                result = _refused(task, f"The Dask task running step '{task.node_name}' failed: "
                                        f"{type(exc).__name__}: {exc} (a worker that died, or a task that could "
                                        "not be sent or run).")
        except Exception as exc:   # the outcome could not be fetched (the connection went away)
            result = _refused(task, f"The outcome of step '{task.node_name}' could not be fetched from the Dask "
                                    f"cluster: {type(exc).__name__}: {exc}")
        if not out.done():
            out.set_result(result)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel``, cancel this run's tasks on the cluster (bounded in time).

        The connection stays open for the next run of this process; the cluster is not touched.
        """
        with self._lock:
            # the engine and its caller both cancel on Ctrl-C: the cluster is asked once
            repeated, self._cancelled = self._cancelled, self._cancelled or cancel
            self._closed = True
            futures = [] if repeated else list(self._futures.values())
            waiting, self._waiting = (list(self._waiting), deque()) if cancel else ([], self._waiting)
        for task, out, _resources in waiting:   # never sent: they resolve as cancelled
            out.set_result(_refused(task, f"Step '{task.node_name}' was cancelled before it was sent to the "
                                          "Dask cluster."))
        if cancel and futures:
            done = threading.Event()

            def cancel_all() -> None:
                try:
                    self._client.cancel(futures, force=True)
                finally:
                    done.set()

            # the client's own call may wait on the scheduler: never longer than cancel_wait
            threading.Thread(target=cancel_all, name="conveyor-dask-cancel", daemon=True).start()
            done.wait(self.cancel_wait)


# --- on the worker ----------------------------------------------------------------------------

_STOPPED_STATES = ("cancelled", "released", "forgotten")   # the worker was told the task is not wanted


_preemptible: bool | None = None   # this worker process preempts its attempts on SIGTERM (None: not set up yet)
_preemptible_lock = threading.Lock()


def make_preemptible(worker: Any, wait_s: float = 5.0) -> bool:
    """Have SIGTERM to this worker process preempt its attempts (once per process; from a task's thread).

    Handlers are set in the main thread, which runs the worker's event loop: the setting is handed
    to the loop. False where the loop runs in another thread (a cluster of threads in the driver's
    process), where a signal is not the worker's alone."""
    global _preemptible
    with _preemptible_lock:
        if _preemptible is not None:
            return _preemptible
        done = threading.Event()

        def install() -> None:
            global _preemptible
            try:
                if _preemptible is not None:   # set by an earlier task whose wait ran out
                    pass
                elif threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, preempting_handler(signal.getsignal(signal.SIGTERM)))
                    _preemptible = True
                else:
                    _preemptible = False
            finally:
                done.set()

        try:
            worker.loop.add_callback(install)
        except Exception:   # no loop to hand it to
            return False
        if not done.wait(wait_s):
            return False    # the loop is busy: the next task tries again
        return bool(_preemptible)


def run_on_worker(task: StepTask) -> StepResult:
    """The Dask task: run the step isolated, stopping it when the scheduler cancels or releases it."""
    from distributed import get_worker

    worker = get_worker()
    make_preemptible(worker)
    key = worker.get_current_task()
    cancellation = Cancellation()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.2):
            state = worker.state.tasks.get(key)
            if state is None or state.state in _STOPPED_STATES:
                cancellation.cancel()
                return

    watcher = threading.Thread(target=watch, name=f"conveyor-watch-{task.node_name}", daemon=True)
    watcher.start()
    try:
        return run_task_isolated(task, cancellation)
    finally:
        finished.set()
        watcher.join()
        cancellation.close()
