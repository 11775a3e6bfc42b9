"""Where trials run: threads, processes or Ray tasks, chosen like a pipeline's executor.

A dispatcher takes a :class:`~conveyor.train.trial.TrialTask` and returns a future of its
:class:`~conveyor.train.trial.TrialOutcome`. With threads there is none: each lane of the study
evaluates its trial itself, sharing the study object. Processes and Ray tasks receive the task
cloud-pickled (so closures and lambdas work) and open the study from its database URL, once per
worker.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from conveyor.errors import ConfigurationError
from conveyor.train.trial import TrialOutcome, TrialTask, evaluate_pickled, evaluate_shipped

DISPATCHERS = ("thread", "process", "ray")


class Dispatcher(Protocol):
    """Runs trials and hands back futures."""

    name: str

    def submit(self, task: TrialTask) -> Future[TrialOutcome]:
        ...

    def shutdown(self, cancel: bool = False) -> None:
        ...


def _init_process(owner_pid: int) -> None:
    from conveyor.runtime import processes

    processes.tie_to_parent(owner_pid)   # a killed coordinator leaves no trial process behind


class ProcessDispatcher:
    """Trials in spawned worker processes, reused across trials (imports and the study stay warm)."""

    name = "process"

    def __init__(self, parallelism: int) -> None:
        self._pool = ProcessPoolExecutor(max_workers=parallelism, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_process, initargs=(os.getpid(),))

    def submit(self, task: TrialTask) -> Future[TrialOutcome]:
        return self._pool.submit(evaluate_pickled, _pickled(task))

    def shutdown(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayDispatcher:
    """Trials as Ray tasks on the cluster at ``address`` (the settings' Ray address), else on a local Ray.

    What every trial of the study shares (the objective, its arguments, the sampler and pruner the
    workers open the study with) is pickled and put into Ray's object store once; each task carries
    a reference to it (boxed, so Ray does not fetch it for every task) and the trial's id, and a
    worker unpickles the shared part once (``trial.evaluate_shipped``). Tasks rather than one actor
    per lane: an actor is a new process per study (about a second to start and import), while
    tasks run in the job's warm worker processes and hold no CPU between trials.
    """

    name = "ray"

    def __init__(self, parallelism: int, *, address: str | None = None, num_cpus: float = 1) -> None:
        from conveyor.executors.ray_connect import connect

        connect(address, start_local=True)
        import ray

        self._ray = ray
        self._remote = ray.remote(num_cpus=num_cpus, max_retries=0)(evaluate_shipped)
        self._refs: list[Any] = []
        self._lock = threading.Lock()
        self._shared: tuple[str, list[Any]] | None = None

    def submit(self, task: TrialTask) -> Future[TrialOutcome]:
        with self._lock:
            if self._shared is None:
                import cloudpickle

                blob = cloudpickle.dumps((task.objective, task.args, task.sampler, task.pruner))
                self._shared = (f"{task.study_name}:{uuid.uuid4().hex}", [self._ray.put(blob)])
            key, box = self._shared
        ref = self._remote.remote(key, box, task.storage_url, task.study_name, task.trial_id, task.frozen)
        self._refs.append(ref)
        return ref.future()   # type: ignore[no-any-return]

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:   # noqa: BLE001 - a finished task cannot be cancelled; nothing to do
                    pass
        self._refs.clear()
        self._shared = None


def _pickled(task: TrialTask) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(task)   # type: ignore[no-any-return]


def dispatcher(name: str, parallelism: int, *, ray_address: str | None = None) -> Dispatcher | None:
    """The dispatcher for an executor name; None for threads (``local``): lanes evaluate in place."""
    name = "thread" if name == "local" else name
    if name == "thread":
        return None
    if name == "process":
        return ProcessDispatcher(parallelism)
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigurationError("Trials on Ray need Ray: pip install 'conveyor[ray]'.") from None
        return RayDispatcher(parallelism, address=ray_address)
    raise ConfigurationError(f"cv.tune: executor {name!r} is not known. Use one of: {', '.join(DISPATCHERS)}.")
