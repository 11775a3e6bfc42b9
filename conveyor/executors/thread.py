"""Local threads: the default; values pass in memory, no serialisation."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from conveyor.config import Settings
from conveyor.runtime.worker import StepResult, StepTask, run_task


class ThreadExecutor:
    """Runs independent steps in parallel threads of this process.

    A thread cannot be stopped: a timed-out attempt goes on in the background and its retry waits
    for it to finish. Pools, threads and processes a step starts stay with this process; the run
    does not wait for them. Use the process executor to have them stopped after each step.
    """

    name = "thread"
    in_process = True

    def __init__(self, max_workers: int = 4, *, settings: Settings | None = None) -> None:
        # settings: unused, every step takes what it needs in its task
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="conveyor-step")

    def submit(self, task: StepTask) -> Future[StepResult]:
        return self._pool.submit(run_task, task)

    def shutdown(self, cancel: bool = False) -> None:
        # Threads cannot be killed; on cancel the queue is dropped and running bodies are abandoned.
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
