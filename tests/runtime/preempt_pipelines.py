"""Pipelines for the checkpoint and preemption tests. They take the folder they write their journal
to as a parameter (a driver started as a subprocess runs them)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import conveyor as cv
from tests.executors.pipelines import journal, note  # noqa: F401  (the tests read the journal through here)


@cv.step(cache=False, preemptible=True)
def train_sgd(folder: str, epochs: int, epoch_s: float) -> float:
    """An SGD classifier trained one epoch at a time (partial_fit), checkpointed after each."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    state = cv.restore({"epoch": 0, "model": None})
    model = state["model"] if state["model"] is not None else SGDClassifier(random_state=0)
    note(folder, f"attempt {cv.get_step_context().attempt} pid {os.getpid()} worker {os.getppid()} "
                 f"from {state['epoch']}")
    for epoch in range(state["epoch"], epochs):
        note(folder, f"epoch {epoch}")
        model.partial_fit(x, y, classes=[0, 1])
        time.sleep(epoch_s)          # a long epoch: the signals arrive in the middle of one
        cv.checkpoint({"epoch": epoch + 1, "model": model})
    return float(model.score(x, y))


@cv.pipeline
def sgd(folder: str, epochs: int = 8, epoch_s: float = 0.5):
    train_sgd(folder, epochs, epoch_s)


@cv.step(cache=False, retries=1, backoff=0.01)
def counts_up(folder: str, until: int) -> int:
    """Counts with a checkpoint per number; fails once at 2 (a retry continues from the checkpoint)."""
    start = cv.restore(0)
    for i in range(start, until):
        note(folder, f"count {i}")
        if i == 2 and not (Path(folder) / "failed").exists():
            (Path(folder) / "failed").write_text("x")
            raise ConnectionError("lost the connection once")
        cv.checkpoint(i + 1)
    return start


@cv.pipeline
def counting(folder: str, until: int = 5):
    counts_up(folder, until)


@cv.step(cache=False)
def ignores_preemption(folder: str, seconds: float) -> str:
    """Never checkpoints: the grace period ends it."""
    note(folder, f"attempt {cv.get_step_context().attempt} pid {os.getpid()} worker {os.getppid()} from 0")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return "done"


@cv.pipeline
def stubborn(folder: str, seconds: float = 60.0):
    ignores_preemption(folder, seconds)
