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
