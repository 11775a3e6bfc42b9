"""A pipeline with every construct an export maps: parameters of each type, a run-time fan-out,
a join, a condition on an output, retries, a timeout and resources. Fast and offline."""

from __future__ import annotations

import os
from pathlib import Path

import conveyor as cv

FLAKY_MARKS = os.environ.get("BRANCHY_FLAKY_DIR", "")


@cv.step
def make_shards(n: int, scale: float) -> list[dict]:
    """A list whose length is known only at run time: the fan-out's elements."""
    return [{"shard": i, "value": (i + 1) * scale} for i in range(n)]


@cv.step(retries=2, backoff=0.01, timeout=120, cpus=1, memory="256Mi")
def score(shard: dict) -> float:
    """One element of the fan-out; fails once per shard when BRANCHY_FLAKY_DIR is set (a retry heals it)."""
    if FLAKY_MARKS:
        mark = Path(FLAKY_MARKS) / f"shard-{shard['shard']}"
        if not mark.exists():
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text("failed once")
            raise ConnectionError(f"transient failure on shard {shard['shard']}")
    return shard["value"] * 2


@cv.step
def total(scores: list[float]) -> dict:
    """The join: every element's output, in order."""
    cv.log_metric("total", sum(scores))
    return {"total": sum(scores), "count": len(scores)}


@cv.step
def publish(summary: dict, label: str) -> str:
    """Runs only when the total clears the threshold."""
    return f"{label}:{summary['total']:.1f}"


@cv.step
def report(summary: dict, verbose: bool) -> str:
    """Runs whatever the condition decides."""
    return f"{summary['count']} shards" + (f", total {summary['total']}" if verbose else "")


@cv.pipeline
def branchy(n: int = 3, scale: float = 1.5, threshold: float = 5.0, label: str = "run", verbose: bool = True):
    shards = make_shards(n, scale)
    scores = score.map(shard=shards)
    summary = total(scores)
    with cv.when(summary["total"] >= threshold):
        publish(summary, label)
    report(summary, verbose)
