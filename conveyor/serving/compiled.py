"""Compiled predictions: scikit-learn linear models answered with NumPy alone, equal to ``model.predict``.

A 1-row ``LogisticRegression.predict`` spends ~95% of its time in scikit-learn's input checks
(array-API namespace, dataframe detection, finiteness, feature count) and ~5% computing. The
server's input is already a validated, finite float64 matrix, so the same arithmetic (one matmul,
the intercept, a threshold or an argmax, the class lookup) is run directly on it.

Safety: only exact classes listed here, fitted, dense, and only once the compiled function gave the
very same answer as ``model.predict`` on probe rows at load; any input it was not checked for
(another dtype or width, a non-finite value, a DataFrame) goes to ``model.predict`` as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("conveyor.serving")

Predict = Callable[[Any], np.ndarray]

# Classifiers whose predict is classes_[threshold-or-argmax of X @ coef_.T + intercept_].
_CLASSIFIERS = {"LogisticRegression", "RidgeClassifier", "SGDClassifier", "LinearSVC", "Perceptron"}
# Regressors whose predict is X @ coef_.T + intercept_.
_REGRESSORS = {"LinearRegression", "Ridge", "Lasso", "ElasticNet", "SGDRegressor", "LinearSVR", "HuberRegressor",
               "BayesianRidge", "ARDRegression", "LassoLars", "Lars", "OrthogonalMatchingPursuit"}


def compile_predict(model: Any) -> Predict | None:
    """A function equal to ``model.predict`` on 2-D float64 arrays, or None when ``model`` is not one we know."""
    cls = type(model)
    if not cls.__module__.startswith("sklearn.linear_model"):
        return None
    try:
        if cls.__name__ in _CLASSIFIERS:
            fast = _classifier(model)
        elif cls.__name__ in _REGRESSORS:
            fast = _regressor(model)
        else:
            return None
    except (AttributeError, TypeError, ValueError):   # not fitted, sparse coefficients, odd shapes
        return None
    if fast is None or not _agrees(model, fast):
        return None
    return fast


def _dense(model: Any) -> tuple[np.ndarray, Any, int]:
    coef = model.coef_
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64:
        raise TypeError("coefficients are not a dense float64 array")
    intercept = model.intercept_
    if isinstance(intercept, np.ndarray) and intercept.dtype != np.float64:
        raise TypeError("intercept is not float64")
    if getattr(model, "feature_names_in_", None) is not None:
        raise TypeError("fitted on named columns: served from DataFrames")
    width = coef.shape[-1]
    return coef.T, intercept, width


def _classifier(model: Any) -> Predict | None:
    coef_t, intercept, width = _dense(model)
    classes = model.classes_
    if coef_t.ndim != 2:
        return None
    predict = model.predict

    def fast(x: Any) -> np.ndarray:
        if type(x) is not np.ndarray or x.dtype != np.float64 or x.ndim != 2 or x.shape[1] != width \
                or not np.isfinite(x).all():
            return np.asarray(predict(x))
        scores = x @ coef_t + intercept
        if scores.shape[1] == 1:
            return classes[(scores[:, 0] > 0).astype(int)]
        return classes[scores.argmax(axis=1)]
    return fast


def _regressor(model: Any) -> Predict | None:
    coef_t, intercept, width = _dense(model)
    predict = model.predict

    def fast(x: Any) -> np.ndarray:
        if type(x) is not np.ndarray or x.dtype != np.float64 or x.ndim != 2 or x.shape[1] != width \
                or not np.isfinite(x).all():
            return np.asarray(predict(x))
        return x @ coef_t + intercept
    return fast


def _agrees(model: Any, fast: Predict) -> bool:
    """Same values, dtype and shape as ``model.predict`` on probe rows (1 row and many, both signs)."""
    width = model.coef_.shape[-1]
    rng = np.random.default_rng(0)
    probes = [rng.normal(size=(1, width)), rng.normal(scale=10.0, size=(64, width)), np.zeros((3, width))]
    try:
        for x in probes:
            want = np.asarray(model.predict(x))
            got = fast(x)
            if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
                log.debug("compiled predict of %s disagrees with its predict; not used", type(model).__name__)
                return False
    except Exception:   # the model cannot predict probes: leave it to its own predict
        return False
    return True
