"""Compiled predictions must equal scikit-learn's own, and step aside for everything they were not checked for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.tree import DecisionTreeClassifier

from conveyor.errors import PredictionFailed
from conveyor.serving.catalog import ColumnSpec, EndpointSpec, InMemoryCatalog, ModelKey, Signature, WeightedRoute
from conveyor.serving.compiled import compile_predict
from conveyor.serving.service import ServingService

RNG = np.random.default_rng(7)
X = RNG.normal(size=(400, 6))
BINARY = X[:, 0] + X[:, 1] > 0
THREE = np.digitize(X[:, 0], [-0.5, 0.5])
TARGET = X @ np.arange(1.0, 7.0) + 3.0


@pytest.mark.parametrize("model", [
    LogisticRegression().fit(X, BINARY),
    LogisticRegression().fit(X, np.where(BINARY, "yes", "no")),
    LogisticRegression().fit(X, THREE),
    SGDClassifier(random_state=0).fit(X, THREE),
    LinearRegression().fit(X, TARGET),
    LinearRegression().fit(X, np.column_stack([TARGET, -TARGET])),
    Ridge().fit(X, TARGET),
    ElasticNet(alpha=0.01).fit(X, TARGET),
])
@pytest.mark.parametrize("rows", [1, 7, 300])
def test_compiled_predictions_equal_the_models_own(model, rows) -> None:
    fast = compile_predict(model)
    assert fast is not None
    x = RNG.normal(scale=3.0, size=(rows, 6))
    want = model.predict(x)
    got = fast(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_models_it_does_not_know_are_left_to_their_own_predict() -> None:
    assert compile_predict(DecisionTreeClassifier().fit(X, BINARY)) is None
    assert compile_predict(LogisticRegression()) is None          # not fitted
    named = LogisticRegression().fit(pd.DataFrame(X, columns=list("abcdef")), BINARY)
    assert compile_predict(named) is None                       # served from DataFrames


def test_inputs_it_was_not_checked_for_go_to_the_model() -> None:
    model = LogisticRegression().fit(X, BINARY)
    fast = compile_predict(model)
    with pytest.raises(ValueError, match="features"):         # scikit-learn's own width error
        fast(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fast(np.full((1, 6), np.nan))
    np.testing.assert_array_equal(fast(X[:3].astype(np.float32)), model.predict(X[:3].astype(np.float32)))


def service_for(model, compiled: bool) -> ServingService:
    sig = Signature(tuple(ColumnSpec(f"f{i}", "float64") for i in range(6)))
    cat = InMemoryCatalog()
    cat.add_model("m", 1, model, sig)
    cat.set_endpoint(EndpointSpec("m", (WeightedRoute(ModelKey("m", 1), 100),)))
    return ServingService(cat, compiled_predict=compiled)


def test_the_service_answers_the_same_with_and_without_compiled_predictions() -> None:
    model = LogisticRegression().fit(X, THREE)
    columns = {f"f{i}": X[:50, i].tolist() for i in range(6)}
    on, off = service_for(model, True), service_for(model, False)
    assert on.models.get(ModelKey("m", 1)).compiled is not None
    assert off.models.get(ModelKey("m", 1)).compiled is None
    a = on.predict(columns, endpoint="m", headers={}, protocol="t").values
    b = off.predict(columns, endpoint="m", headers={}, protocol="t").values
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype


def test_a_model_that_raises_still_answers_prediction_failed() -> None:
    class Broken(LogisticRegression):   # a subclass is not compiled: its own predict runs
        def predict(self, X):
            raise RuntimeError("boom")

    service = service_for(Broken().fit(X, BINARY), True)
    with pytest.raises(PredictionFailed, match="boom"):
        service.predict({f"f{i}": [0.0] for i in range(6)}, endpoint="m", headers={}, protocol="t")

