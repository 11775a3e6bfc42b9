"""Pipelines the dashboard's tests run for real: one that trains and registers, one that waits."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import conveyor as cv


@cv.step
def make_data(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})


@cv.step
def train(df: pd.DataFrame, lr: float) -> int:
    for i in range(20):
        cv.log_metric("loss", 1.0 / (1 + i * lr), step=i)
    cv.log_metric("auc", 0.7 + lr / 10)
    print(f"trained with lr={lr}")
    model = LogisticRegression().fit(df, (df["a"] > 0).astype(int))
    return cv.register_model("clf", model, metrics={"auc": 0.7 + lr / 10}).version


@cv.pipeline
def training(seed: int = 0, lr: float = 0.1):
    train(make_data(seed), lr)


@cv.step
def wait_for(flag: str) -> str:
    """Runs until the file ``flag`` exists, so a test can watch the run live."""
    deadline = time.time() + 60
    while not Path(flag).exists() and time.time() < deadline:
        time.sleep(0.05)
    return flag


@cv.step
def after(value: str) -> int:
    return len(value)


@cv.pipeline
def gated(flag: str = "go"):
    after(wait_for(flag))


@contextlib.contextmanager
def gated_run(home: Any, flag: Path) -> Iterator[dict[str, Any]]:
    """``gated`` running on a thread until the block ends (or writes ``flag``); the dict gets its ``run``."""
    done: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: done.setdefault("run", gated.run(flag=str(flag), client=home)))
    worker.start()
    try:
        yield done
    finally:
        flag.write_text("now")
        worker.join(timeout=60)


@cv.step
def fit_on_dataset(ref: str) -> int:
    """Reads a registered dataset version (recorded as read by this run) and registers a model on it."""
    df = cv.data.load_dataset(ref).to_pandas()
    model = LogisticRegression().fit(df[["a", "b"]], (df["a"] > 0).astype(int))
    return cv.register_model("from_data", model).version


@cv.pipeline
def from_dataset(ref: str = "events:1"):
    fit_on_dataset(ref)


@cv.step
def explode(x: int) -> int:
    raise ValueError(f"bad input {x}")


@cv.pipeline
def failing(x: int = 1):
    explode(x)
