"""The executor protocol: where step bodies run."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from conveyor.runtime.worker import StepResult, StepTask


class Executor(Protocol):
    """Runs tasks and hands back futures. ``in_process`` executors share memory with the engine."""

    name: str
    in_process: bool

    def submit(self, task: StepTask) -> Future[StepResult]:
        """Start a task; the future resolves to its result (run_task never raises)."""
        ...

    def shutdown(self, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel``, drop queued ones and stop running ones if possible."""
        ...
