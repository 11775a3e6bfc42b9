"""Real servers on free loopback ports, started and always stopped by fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import uvicorn

from tests.conftest import free_port


class Running:
    """A uvicorn server in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def run_server() -> Iterator[Callable[[Any], Running]]:
    started: list[Running] = []

    def start(app: Any) -> Running:
        r = Running(app).__enter__()
        started.append(r)
        return r

    yield start
    for r in started:
        r.__exit__(None, None, None)


def training_data(seed: int = 0, rows: int = 300) -> tuple[Any, Any]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(4)})
    X["plan"] = rng.choice(["basic", "pro"], rows)
    y = ((X["x0"] + 0.5 * X["x1"] + (X["plan"] == "pro")) > 0.5).astype(int)
    return X, y


def fitted_pipeline(seed: int = 0) -> tuple[Any, Any]:
    """A real sklearn pipeline with a categorical column, as users deploy them."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = training_data(seed)
    pre = ColumnTransformer([("plan", OneHotEncoder(), ["plan"])], remainder="passthrough")
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(X, y), X
