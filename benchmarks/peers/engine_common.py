"""Shared by the peer engine scripts: the step bodies and timing, identical to step_overhead.py's."""

from __future__ import annotations

import json
import statistics
import time

REPEATS = 5


def inc(x: int) -> int:
    return x + 1


def square(x: int) -> int:
    return x * x


def make_frame(rows: int) -> object:
    import numpy as np
    import pandas as pd

    return pd.DataFrame(np.random.default_rng(0).normal(size=(rows, 10)), columns=[f"c{i}" for i in range(10)])


def frame_sum(df: object) -> float:
    return float(df["c0"].sum())


def median(fn, repeats: int = REPEATS, setup=None) -> float:
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def emit(results: dict[str, float]) -> None:
    print(json.dumps(results))
