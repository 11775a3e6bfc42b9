"""Nested conditions, a step after a gated step, a gated fan-out over an ungated list: what a target must
skip, and what it must still run."""

from __future__ import annotations

import conveyor as cv


@cv.step
def measure(x: int) -> dict:
    return {"auc": x / 10, "big": x > 5}


@cv.step
def train(m: dict) -> str:
    return f"model@{m['auc']}"


@cv.step
def announce(m: dict) -> str:
    return f"big {m['auc']}"


@cv.step
def deploy(model: str) -> str:
    """Under no condition of its own: it runs only if train ran, since it takes train's output."""
    return f"deployed {model}"


@cv.step
def summary(m: dict) -> str:
    return f"auc {m['auc']}"


@cv.step
def chunks(x: int) -> list[int]:
    return list(range(x % 3 + 1))


@cv.step
def piece(c: int) -> int:
    return c * 10


@cv.step
def gather(pieces: list[int]) -> int:
    return sum(pieces)


@cv.pipeline
def gated(x: int = 7):
    m = measure(x)
    parts = chunks(x)
    with cv.when(m["auc"] >= 0.5):
        model = train(m)
        with cv.when(m["big"]):
            announce(m)
        gather(piece.map(c=parts))     # the list is made whatever the gate says; its elements are not
    deploy(model)
    summary(m)
