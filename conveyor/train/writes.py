"""The trials' child runs, written by one thread beside the study, several writes to a transaction.

A lane of ``cv.tune`` hands the opening and the closing of its trial's run to a :class:`TrialWriter`
and goes on: the opening is written while the objective runs, and the lane waits for it only
before it tells the study the trial's outcome (so a trial the study counts as finished always has
its run); the closing is not waited for, and goes in the transaction of the next opening (a lane
asks for its next trial right after it closed one), so a trial costs the study's connection one
transaction, not two. Writes go in the order they were queued. ``stop`` writes what is left and
raises the first write that failed, so a study never ends with a trial's record silently missing;
a process killed meanwhile leaves runs the next session closes from the study (see
``studies.recover_interrupted``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection

from conveyor.store.metadata.trials import Trials


class _Batched(Trials):
    """``Trials`` whose writes join the writer's open transaction, when there is one."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.conn: Connection | None = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self.conn is not None:
            yield self.conn
            return
        with super().write() as conn:
            yield conn


_Write = tuple[Callable[[], Any], Future, bool]   # the write, its result, whether someone waits for it


class TrialWriter:
    """Opens and closes trial runs on a thread of its own, in order, batching what is queued together."""

    def __init__(self, engine: Any) -> None:
        self._trials = _Batched(engine)
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="conveyor-trial-writes", daemon=True)
        self._thread.start()

    def open(self, **fields: Any) -> Future:
        """Queue the opening of a trial's run (``Trials.open``'s arguments); the future holds its run id."""
        return self._put(lambda: self._trials.open(**fields), urgent=True)

    def close(self, run_id: str, outcome: Any, **fields: Any) -> Future:
        """Queue the closing of a trial's run (``Trials.close``'s arguments)."""
        return self._put(lambda: self._trials.close(run_id, outcome, **fields), urgent=False)

    def stop(self, *, raise_failed: bool = True) -> None:
        """Wait for every queued write and end the thread; then raise the first write that failed."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_failed and self._failed is not None:
            raise self._failed

    def _put(self, fn: Callable[[], Any], *, urgent: bool) -> Future:
        fut: Future = Future()
        if not self._thread.is_alive():
            raise RuntimeError("the trial writer was stopped")
        self._queue.put((fn, fut, urgent))
        return fut

    def _loop(self) -> None:
        writes: list[_Write] = []
        while True:
            item = self._queue.get()
            stopping = item is None
            if item is not None:
                writes.append(item)
            while True:   # and whatever else is queued already
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = stopping or item is None
                if item is not None:
                    writes.append(item)
            if writes and (stopping or any(urgent for _, _, urgent in writes)):
                self._write(writes)
                writes = []
            if stopping:
                return

    def _write(self, writes: list[_Write]) -> None:
        try:
            with self._trials.write() as conn:
                self._trials.conn = conn
                try:
                    results = [fn() for fn, _, _ in writes]
                finally:
                    self._trials.conn = None
        except Exception:   # noqa: BLE001 - one of them failed: each alone, so the others land
            for fn, fut, _ in writes:
                self._one(fn, fut)
            return
        for (_, fut, _), result in zip(writes, results):
            fut.set_result(result)

    def _one(self, fn: Callable[[], Any], fut: Future) -> None:
        try:
            fut.set_result(fn())
        except Exception as exc:   # noqa: BLE001 - handed to whoever waits, and to stop()
            self._failed = self._failed or exc
            fut.set_exception(exc)


__all__ = ["TrialWriter"]
