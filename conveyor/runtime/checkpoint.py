"""Checkpoints and preemption: a step saves its progress and a later attempt continues from it.

``cv.checkpoint(state)`` stores ``state`` in the artifact store under the step call's key (run,
step, map index) and ``cv.restore()`` loads the latest one, so a retried attempt, a resumed run or
an attempt that follows a preemption goes on from there. A worker told to stop (SIGTERM, as when a
spot instance is taken back) lets its attempt know: ``cv.preempted()`` turns True, the next
``cv.checkpoint`` saves and then ends the attempt, and after the grace period
(``CONVEYOR_PREEMPT_GRACE_S``) it ends anyway. The attempt is recorded ``preempted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from conveyor.errors import ConveyorError, StepPreempted
from conveyor.runtime.context import StepContext, current_step

_preempted_at: float | None = None   # set in the process running the attempt when its worker is told to stop


def mark_preempted() -> None:
    """Called from the signal handler of the process that runs the attempt."""
    global _preempted_at
    if _preempted_at is None:
        _preempted_at = time.monotonic()


def clear_preempted() -> None:
    global _preempted_at
    _preempted_at = None


def preempted() -> bool:
    """True once the worker running this step was told to stop: save progress and return soon."""
    return _preempted_at is not None


def _context(what: str) -> StepContext:
    ctx = current_step()
    if ctx is None:
        raise ConveyorError(f"cv.{what}() was called outside a running step. Call it from inside a function "
                            "decorated with @cv.step while a pipeline runs.")
    if not ctx.artifact_root:
        raise ConveyorError(f"cv.{what}() needs the run's artifact store, and this step was started without one.")
    return ctx


def _document(ctx: StepContext) -> str:
    node = ctx.node_name.partition("[")[0]
    where = node if ctx.map_index is None else f"{node}.{ctx.map_index}"
    return f"checkpoints/{ctx.run_id}/{where}.json"


def _store(ctx: StepContext) -> Any:
    from conveyor.runtime.worker import artifact_store

    return artifact_store(ctx.artifact_root, ctx.inline_max_bytes)


def checkpoint(state: Any) -> None:
    """Save ``state`` (any value the artifact store can hold) as this step call's latest progress.

    Raises ``StepPreempted`` after saving when the worker was told to stop, so a loop that
    checkpoints every epoch needs no other code to be preemptible.
    """
    ctx = _context("checkpoint")
    store = _store(ctx)
    stored = store.put(state)
    doc = {"attempt": ctx.attempt, "at": time.time(), "stored": dataclasses.asdict(stored)}
    store.write_document(_document(ctx), json.dumps(doc).encode())
    if preempted():
        raise StepPreempted(f"Step '{ctx.node_name}' was preempted (its worker was told to stop); its "
                            f"checkpoint of attempt {ctx.attempt} was saved and the next attempt continues from it.")


def restore(default: Any = None) -> Any:
    """The state of this step call's latest ``checkpoint``, or ``default`` when it has none yet."""
    from conveyor.store.artifacts.store import StoredArtifact

    ctx = _context("restore")
    store = _store(ctx)
    raw = store.read_document(_document(ctx))
    if raw is None:
        return default
    return store.get(StoredArtifact(**json.loads(raw)["stored"]))


# --- SIGTERM to a process whose attempts run in its children (Dask workers, exported tasks) ------

def preempting_handler(previous: Any, on_stop: Callable[[], None] | None = None) -> Callable[[int, Any], None]:
    """A SIGTERM handler that preempts the attempts running in children of this process (each gets
    its grace period, see ``worker.preempt_running_attempt``), after calling ``on_stop``. With no
    attempt running, or at a second SIGTERM, it does what ``previous`` did (the default: the
    process ends, as the signal would end it)."""
    import os
    import signal

    def on_term(signum: int, frame: Any) -> None:
        from conveyor.runtime.worker import preempt_running_attempt

        signal.signal(signal.SIGTERM, previous)   # a second SIGTERM does not wait for the grace period
        if on_stop is not None:
            on_stop()                             # before the attempts hear of it: nothing starts after
        if preempt_running_attempt():
            return
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    return on_term


@contextlib.contextmanager
def preempting_children(on_stop: Callable[[], None]) -> Iterator[None]:
    """While this block runs in the main thread, SIGTERM preempts the attempts running in children
    (``preempting_handler``); the previous handler is put back afterwards. Elsewhere, nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, preempting_handler(previous, on_stop))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_attempts(limit_s: float) -> None:
    """Until the attempts running in children of this process have ended (at most ``limit_s``)."""
    from conveyor.runtime import worker

    deadline = time.monotonic() + limit_s
    while worker._attempt_children and time.monotonic() < deadline:   # pid -> grace, while the child runs
        time.sleep(0.05)
