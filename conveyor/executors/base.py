"""The executor protocol: where step bodies run."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from conveyor.runtime.worker import StepResult, StepTask


class Executor(Protocol):
    """Runs tasks and hands back futures. ``in_process`` executors share memory with the engine.

    The contract every executor keeps: two attempts of one step never overlap (a timed-out
    attempt is stopped, or its retry waits for it); ``shutdown`` returns in bounded time whatever
    the step bodies started; out-of-process executors leave no process, pool or semaphore of a
    step behind and their workers exit when the engine's process dies.

    The registry builds one as ``cls(max_workers=..., settings=...)``: the caller's settings are
    passed in (a cluster's address, what workers need), never read from the environment again.
    """

    name: str
    in_process: bool

    def submit(self, task: StepTask) -> Future[StepResult]:
        """Start a task; the future resolves to its result (run_task never raises)."""
        ...

    def shutdown(self, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel``, drop queued ones and stop running ones if possible."""
        ...
