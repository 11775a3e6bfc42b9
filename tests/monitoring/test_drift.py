"""Verdicts on constructed data with known shifts; quality checks; reports; the registry's stored profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conveyor.errors import InvalidRequest
from conveyor.monitoring.drift import ColumnRule, DriftConfig, compare
from conveyor.monitoring.profile import Profile
from conveyor.monitoring.report import to_html


def frame(n: int, seed: int, *, shift: float = 0.0, spread: float = 1.0, new_cat: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    plan[rng.random(n) < new_cat] = "enterprise"
    return pd.DataFrame({"age": rng.normal(40 + shift * 10, 10 * spread, n), "score": rng.uniform(0, 1, n),
                         "visits": rng.poisson(4, n), "plan": plan})


@pytest.mark.parametrize("n", [2_000, 200_000])
def test_identical_distributions_raise_no_alarm(n) -> None:
    report = compare(Profile.from_data(frame(n, 1)), frame(n, 2))
    assert report.drifted_columns == [] and not report.dataset_drift and report.quality == []


def test_known_shifts_are_found_and_named() -> None:
    report = compare(Profile.from_data(frame(50_000, 1)), frame(50_000, 2, shift=0.1, new_cat=0.06))
    assert report.drifted_columns == ["age", "plan"]
    assert report.dataset_drift                        # 2 of 4 columns >= 30%
    age = next(c for c in report.columns if c.name == "age")
    assert "KS p=" in age.reason and age.statistics["ks_statistic"] > 0.02
    unseen = [q for q in report.quality if q.check == "unseen_categories"]
    assert unseen and "enterprise" in unseen[0].message


def test_a_significant_but_tiny_shift_on_many_rows_is_not_drift() -> None:
    # 0.01 sd on 400k rows: the test alone says "different", the effect floor says "does not matter"
    report = compare(Profile.from_data(frame(400_000, 1)), frame(400_000, 2, shift=0.01))
    age = next(c for c in report.columns if c.name == "age")
    assert age.statistics["ks_pvalue"] < 0.01 and not age.drifted


def test_per_column_methods_and_thresholds() -> None:
    ref = Profile.from_data(frame(20_000, 1))
    cur = frame(20_000, 2, shift=0.05)
    strict = compare(ref, cur, DriftConfig(methods={"age": ColumnRule("wasserstein", 0.01)}))
    lax = compare(ref, cur, DriftConfig(methods={"age": {"method": "psi", "threshold": 5.0}}))
    assert "age" in strict.drifted_columns and "age" not in lax.drifted_columns
    assert next(c for c in strict.columns if c.name == "age").method == "wasserstein"
    with pytest.raises(InvalidRequest, match="unknown drift method"):
        DriftConfig(methods={"age": "magic"})
    with pytest.raises(InvalidRequest, match="categorical"):
        compare(ref, cur, DriftConfig(methods={"plan": "wasserstein"}))


def test_quality_checks_missing_range_types_and_columns() -> None:
    ref = Profile.from_data(frame(5_000, 1))
    cur = frame(5_000, 2)
    cur.loc[: 999, "score"] = np.nan                   # 20% missing
    cur.loc[: 199, "age"] = 500.0                      # out of range
    cur["visits"] = cur["visits"].astype(str)
    cur.loc[: 99, "visits"] = "n/a"                    # not numbers
    cur = cur.drop(columns=["plan"]).assign(extra=1)
    checks = {(q.column, q.check) for q in compare(ref, cur).quality}
    assert {("score", "missing_rate"), ("age", "out_of_range"), ("visits", "type"), ("plan", "missing_column"),
            ("extra", "new_column")} <= checks


def test_stored_profile_round_trip_gives_the_same_verdicts() -> None:
    ref_data, cur = frame(30_000, 1), frame(30_000, 2, shift=0.15)
    exact = compare(Profile.from_data(ref_data), cur)
    stored = compare(Profile.from_dict(Profile.from_data(ref_data).to_dict()), cur)
    assert exact.drifted_columns == stored.drifted_columns == ["age"]
    for a, b in zip(exact.columns, stored.columns, strict=True):
        if a.kind == "numeric":                         # a 2001-point sketch: CDF within 1/2000
            assert abs(a.statistics["ks_statistic"] - b.statistics["ks_statistic"]) < 1e-3


def test_html_report_is_self_contained_and_names_every_column() -> None:
    report = compare(Profile.from_data(frame(3_000, 1)), frame(3_000, 2, shift=0.5))
    page = to_html(report, "t")
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page
    for name in ("age", "score", "visits", "plan"):
        assert f'id="col-{name}"' in page
    assert page.count("<svg") == 4 and "drifted" in page
    data = report.to_dict()
    assert data["drifted_columns"] == ["age"] and data["columns"][0]["plot"]["edges"]


def test_registering_with_data_stores_a_profile_with_predictions(client) -> None:
    from sklearn.linear_model import LogisticRegression

    X = frame(1_000, 1).drop(columns=["plan"])
    model = LogisticRegression(max_iter=500).fit(X, X["age"] > 40)
    client.registry.register("m", model, data=X)
    profile = client.registry.profile("m:1")
    assert set(profile.columns) == {"age", "score", "visits", "prediction"}
    assert profile.columns["prediction"].kind == "categorical"       # booleans are categories
    assert profile.rows == 1_000


# --- predictions and targets of a classifier are categories -----------------------------------

def _labels(n: int, seed: int, p: list[float]) -> np.ndarray:
    return np.random.default_rng(seed).choice(len(p), size=n, p=p)


def test_class_labels_predicted_by_a_classifier_drift_as_categories() -> None:
    X = frame(5_000, 1)
    reference = Profile.from_data(X, predictions=_labels(5_000, 1, [0.6, 0.3, 0.1]),
                                  target=_labels(5_000, 2, [0.6, 0.3, 0.1]))
    assert reference.columns["prediction"].kind == "categorical"
    assert reference.columns["target"].kind == "categorical"
    assert sorted(reference.columns["prediction"].categories) == ["0", "1", "2"]
    # the live log holds labels as floats; they are the same three classes, not three new ones
    current = frame(5_000, 3).assign(prediction=_labels(5_000, 4, [0.3, 0.3, 0.4]).astype(float))
    report = compare(reference, current)
    pred = report.prediction
    assert pred is not None and pred.kind == "categorical" and pred.drifted
    assert {"chi2_pvalue", "js_distance"} <= set(pred.statistics) and "ks_statistic" not in pred.statistics
    assert "chi2" in pred.reason
    assert sorted(pred.plot["categories"]) == ["0", "1", "2"]            # no "1.0": floats are the same labels
    assert not any(q.check == "unseen_categories" for q in report.quality)
    stable = compare(reference, frame(5_000, 5).assign(prediction=_labels(5_000, 6, [0.6, 0.3, 0.1])))
    assert stable.prediction is not None and not stable.prediction.drifted


def test_regression_outputs_stay_numeric_and_a_known_task_decides() -> None:
    rng = np.random.default_rng(0)
    X = frame(2_000, 1)
    regression = Profile.from_data(X, predictions=rng.normal(size=2_000), target=rng.integers(0, 3, 2_000))
    assert regression.columns["prediction"].kind == "numeric"
    assert regression.columns["target"].kind == "numeric"           # the target follows the prediction
    many = Profile.from_data(X, predictions=rng.integers(0, 500, 2_000))
    assert many.columns["prediction"].kind == "numeric"               # 500 distinct whole numbers: a count
    told = Profile.from_data(X, predictions=rng.integers(1, 6, 2_000), task="regression")
    assert told.columns["prediction"].kind == "numeric"
    text = Profile.from_data(X, predictions=np.array(["yes", "no"] * 1_000))
    assert text.columns["prediction"].kind == "categorical"


def test_task_of_reads_the_model() -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from conveyor.monitoring.profile import task_of

    assert task_of(LogisticRegression()) == "classification"
    assert task_of(LinearRegression()) == "regression"
    assert task_of(object()) is None


def test_a_profile_stored_before_labels_were_told_apart_compares_them_as_categories() -> None:
    from conveyor.monitoring.profile import ColumnProfile

    X = frame(3_000, 1)
    labels = np.sort(_labels(3_000, 1, [0.7, 0.3]).astype(float))
    legacy = Profile.from_data(X)
    legacy.columns["prediction"] = ColumnProfile("prediction", "numeric", 3_000, 0, labels, 3_000)
    stored = Profile.from_dict(legacy.to_dict())                       # a sketch of 2,001 order statistics
    report = compare(stored, frame(3_000, 2).assign(prediction=_labels(3_000, 3, [0.3, 0.7])))
    pred = report.prediction
    assert pred is not None and pred.kind == "categorical" and pred.drifted
    assert pred.reference_rows == pytest.approx(3_000, abs=2)          # counts scaled back from the sketch
