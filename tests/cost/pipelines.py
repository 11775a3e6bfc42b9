"""Pipelines for the storage and cost tests; module-level so a resume finds them by reference."""

from __future__ import annotations

import numpy as np

import conveyor as cv


@cv.step(cpus=4, memory="8Gi")
def load(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(rows)


@cv.step(cpus=2, memory="2Gi")
def fit(x: np.ndarray) -> np.ndarray:
    return x * 2.0


@cv.step
def check(model: np.ndarray, fail: bool) -> np.ndarray:
    if fail:
        raise ValueError("asked to fail")
    return model[:100] + 1.0


@cv.pipeline
def chain(rows: int = 2000, seed: int = 0, fail: bool = False) -> None:
    check(fit(load(rows, seed)), fail)


@cv.step(cache=False)
def trains(epochs: int, fail_at: int) -> int:
    """Checkpoints after every epoch; fails at ``fail_at`` (a resume continues from the checkpoint)."""
    start = cv.restore({"epoch": 0})["epoch"]
    for epoch in range(start, epochs):
        if epoch == fail_at:
            raise RuntimeError("stopped mid-training")
        cv.checkpoint({"epoch": epoch + 1, "weights": np.full(20_000, float(epoch))})   # an object, not inline
    return start


@cv.pipeline
def training(epochs: int = 4, fail_at: int = -1) -> None:
    trains(epochs, fail_at)
