"""A pipeline that trains and registers a model from inside a step (for exports without a database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

import conveyor as cv


@cv.step
def features(n: int) -> pd.DataFrame:
    x = np.arange(n, dtype=float)
    return pd.DataFrame({"x": x, "y": 3.0 * x + 1.0})


@cv.step
def train(frame: pd.DataFrame, name: str) -> int:
    model = LinearRegression().fit(frame[["x"]], frame["y"])
    version = cv.register_model(name, model, metrics={"r2": model.score(frame[["x"]], frame["y"])},
                                tags={"trained_on": len(frame)}, data=frame[["x"]], target=frame["y"])
    return version.version


@cv.pipeline
def registers(n: int = 20, name: str = "exported-model"):
    train(features(n), name)
