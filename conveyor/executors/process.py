"""Local processes: for CPU-bound steps that hold the GIL; values pass through the artifact store."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from conveyor.runtime.worker import StepResult, StepTask, run_task


class ProcessExecutor:
    """Runs steps in a pool of fresh (spawned) worker processes."""

    name = "process"
    in_process = False

    def __init__(self, max_workers: int = 2) -> None:
        self._pool = ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, task: StepTask) -> Future[StepResult]:
        return self._pool.submit(run_task, task)

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
