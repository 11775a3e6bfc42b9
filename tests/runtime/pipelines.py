"""Pipelines the runtime tests run; module-level so worker processes can import them."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import conveyor as cv

def _counts() -> Path:
    return Path(os.environ.get("CVTEST_COUNTS", "/tmp/conveyor-test-counts"))


def bump(name: str) -> None:
    """Record one execution of ``name`` in a file (survives processes)."""
    _counts().mkdir(parents=True, exist_ok=True)
    with open(_counts() / name, "a") as fh:
        fh.write("x")


def count(name: str) -> int:
    p = _counts() / name
    return len(p.read_text()) if p.exists() else 0


@cv.step
def inc(x: int) -> int:
    bump("inc")
    return x + 1


@cv.pipeline
def chain(n: int = 5, start: int = 0):
    x = inc(start)
    for _ in range(n - 1):
        x = inc(x)


barrier = threading.Barrier(2, timeout=10)


@cv.step
def meet(tag: str) -> str:
    barrier.wait()     # both branches must be inside at once, or this times out and the step fails
    return tag


@cv.step
def pair(a: str, b: str) -> str:
    return a + b


@cv.pipeline
def parallel():
    pair(meet("a"), meet("b"))


@cv.step
def boom(x: int) -> int:
    print("about to fail")
    raise ValueError(f"bad value {x}")


@cv.step
def slow_ok(x: int) -> int:
    return x * 10


@cv.pipeline
def branches():
    a = inc(1)
    b = boom(a)
    inc(b)              # downstream of the failure: skipped
    slow_ok(a)          # other branch: finishes


@cv.step(retries=2, backoff=0.01)
def flaky(key: str) -> str:
    bump(f"flaky-{key}")
    if count(f"flaky-{key}") < 3:
        raise ConnectionError("transient")
    return "ok"


@cv.step(retries=3, backoff=0.01, retry_on=ConnectionError)
def not_retried(key: str) -> str:
    bump(f"nr-{key}")
    raise KeyError("permanent")


@cv.pipeline
def retrying(key: str = "k"):
    flaky(key)


@cv.pipeline
def retry_filter(key: str = "k"):
    not_retried(key)


@cv.step(timeout=0.3)
def sleepy(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@cv.pipeline
def timing(seconds: float = 5.0):
    sleepy(seconds)


@cv.step(outputs=["items", "report"])
def make(n: int) -> tuple[list, dict]:
    return list(range(n)), {"auc": 0.8, "n": n}


@cv.step
def square(v: int, k: int = 1) -> int:
    cv.log_metric("v", v, step=v)
    return v * v * k


@cv.step
def total(xs: list) -> int:
    return sum(xs)


@cv.step
def published(x: int) -> str:
    return f"published {x}"


@cv.pipeline
def fanout(n: int = 4, threshold: float = 0.5):
    items, report = make(n)
    squares = square.map(v=items, k=cv.unmapped(2))
    t = total(squares)
    with cv.when(report["auc"] >= threshold):
        published(t)
    total([t, t])


@cv.step
def chatty(x: int) -> int:
    print(f"stdout line {x}")
    import sys

    print(f"stderr line {x}", file=sys.stderr)
    logging.getLogger("user.code").warning("a warning %d", x)
    ctx = cv.get_step_context()
    cv.log_params({"node": ctx.node_name, "attempt": ctx.attempt})
    for i in range(3):
        cv.log_metric("loss", 1.0 / (i + 1), step=i)
    return x


@cv.pipeline
def logging_pipeline():
    chatty(1)
    chatty(2)


@cv.step
def frame(rows: int) -> object:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])


@cv.step
def column_sum(df: object) -> float:
    return float(df["a"].sum())


@cv.pipeline
def frames(rows: int = 1000):
    column_sum(frame(rows))


@cv.step
def wait_for_kill(x: int, marker: str) -> int:
    """First execution: signal the test and hang until killed. Later executions return at once."""
    bump("wait_for_kill")
    if count("wait_for_kill") == 1:
        Path(marker).write_text("started")
        import time

        time.sleep(120)
    return x + 100


@cv.pipeline
def crashing(marker: str):
    a = inc(1)
    b = wait_for_kill(a, marker)
    inc(b)


@cv.step
def fixable_upstream(x: int) -> int:
    bump("fixable-upstream")
    return x


@cv.step
def fixable(x: int, switch: str) -> str:
    if not Path(switch).exists():
        raise RuntimeError(f"create {switch} to fix me")
    return "fixed"


@cv.pipeline
def fixable_pipeline(switch: str):
    fixable(fixable_upstream(1), switch)




@cv.step(cache=False)
def column_mean(df: object) -> float:
    return float(df["a"].mean())


@cv.pipeline
def frames_fresh_consumer(rows: int = 1000):
    column_mean(frame(rows))


@cv.step
def reports_then_fails(folder: str) -> int:
    report = Path(folder) / "why.json"
    report.write_text('{"failed": ["price >= 0"]}')
    cv.log_artifact(report)
    raise ValueError("3 rows break price >= 0")


@cv.pipeline
def failing_with_report(folder: str = "."):
    reports_then_fails(folder)
