"""Local processes: for CPU-bound steps that hold the GIL; values pass through the artifact store.

Worker processes are spawned once and reused (imports stay warm). Each attempt of a step then
runs in a child that the worker forks, in a session of its own: a timed-out attempt is stopped
with every process it started, and after each attempt whatever the body left running (loky or
multiprocessing pools, child processes, threads) is shut down, so nothing keeps the run from
returning. Workers exit when the process that started them dies.

SIGTERM to a worker from outside (a spot instance taken back, a node drained) preempts the
attempt it runs: the step gets ``CONVEYOR_PREEMPT_GRACE_S`` to checkpoint, its attempt ends
``preempted`` and the engine runs the call again; a second SIGTERM, or one while no attempt runs,
stops the worker at once. The executor itself stops workers with SIGUSR2 (never preempting).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import wait
from typing import Any

from conveyor.config import Settings
from conveyor.runtime.worker import StepResult, StepTask, run_task_isolated


def _init_worker(owner_pid: int) -> None:
    """Tie the worker to its owner, adopt orphans of its attempts, preempt its attempt on SIGTERM."""
    from conveyor.runtime import processes

    # No watchdog thread where the kernel enforces it: the worker forks, and forking a process
    # with a polling thread in it is what multiprocessing warns against.
    processes.tie_to_parent(owner_pid)
    processes.become_subreaper()

    def stop_now(_signum: int, _frame: Any) -> None:
        for pid in processes.children_of({os.getpid()}):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os._exit(143)

    def on_term(signum: int, frame: Any) -> None:
        from conveyor.runtime.worker import preempt_running_attempt

        signal.signal(signal.SIGTERM, stop_now)   # a second SIGTERM does not wait for the grace period
        if not preempt_running_attempt():
            stop_now(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(STOP_SIGNAL, stop_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the engine's to handle


STOP_SIGNAL = signal.SIGUSR2   # how the executor stops its workers: SIGTERM preempts


class ProcessExecutor:
    """Runs steps in a pool of spawned worker processes, each attempt isolated in its own child."""

    name = "process"
    in_process = False
    shutdown_timeout = 30.0   # seconds workers get to exit before they are terminated

    def __init__(self, max_workers: int = 2, *, settings: Settings | None = None) -> None:
        # settings: unused, every step takes what it needs in its task
        self._pool = ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(os.getpid(),))

    def submit(self, task: StepTask) -> Future[StepResult]:
        return self._pool.submit(run_task_isolated, task)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers, waiting at most ``shutdown_timeout`` (none with ``cancel``), never for ever."""
        # the pool forgets its processes once shut down (None): a second shutdown has nothing to stop
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        if cancel:
            for proc in processes:
                with contextlib.suppress(OSError, TypeError):   # TypeError: not started (no pid)
                    os.kill(proc.pid, STOP_SIGNAL)
        self._pool.shutdown(wait=False, cancel_futures=cancel)
        # wait on the exit sentinels (not join): the pool's own thread reaps these processes too
        deadline = time.monotonic() + (1.0 if cancel else self.shutdown_timeout)
        pending = {proc.sentinel: proc for proc in processes}
        while pending and time.monotonic() < deadline:
            for sentinel in wait(list(pending), max(0.0, deadline - time.monotonic())):
                pending.pop(sentinel)   # type: ignore[call-overload]
        for proc in pending.values():
            with contextlib.suppress(OSError, ValueError):
                proc.kill()
        self._pool.shutdown(wait=True)
