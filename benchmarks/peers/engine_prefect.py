"""Prefect 3 running W1-W4 with its local ephemeral server in a temporary PREFECT_HOME."""

from __future__ import annotations

import os
import sys
import tempfile

home = tempfile.mkdtemp()
os.environ["PREFECT_HOME"] = home
os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = os.path.join(home, "storage")
sys.path.insert(0, os.path.dirname(__file__))

from engine_common import emit, frame_sum, inc, make_frame, median, square  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE  # noqa: E402

t_inc = task(inc, cache_policy=NO_CACHE)
c_inc = task(inc, cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
t_square = task(square, cache_policy=NO_CACHE)
t_make = task(make_frame, cache_policy=NO_CACHE)
t_sum = task(frame_sum, cache_policy=NO_CACHE)


@task(cache_policy=NO_CACHE)
def produce(n: int) -> list:
    return list(range(n))


@task(cache_policy=NO_CACHE)
def join(xs: list) -> int:
    return sum(xs)


@flow
def w1() -> int:
    x = t_inc(0)
    for _ in range(19):
        x = t_inc(x)
    return x


@flow
def w2() -> int:
    items = produce(16)
    return join(t_square.map(items).result())


@flow
def w3() -> float:
    return t_sum(t_make(1_000_000))


@flow
def w4() -> int:
    x = c_inc(0)
    for _ in range(19):
        x = c_inc(x)
    return x


if __name__ == "__main__":
    w1()   # start the ephemeral server and warm imports
    results = {"W1": median(w1), "W2": median(w2), "W3": median(w3)}
    w4()
    results["W4"] = median(w4)
    emit(results)
