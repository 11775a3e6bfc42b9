"""Metric gates: bounds parsed strictly, a missing or NaN metric never passes."""

from __future__ import annotations

import math

import pytest

from conveyor.errors import InvalidRequest
from conveyor.registry.gates import check_metrics, parse_bounds


def test_bounds_are_checked_and_a_missing_or_nan_metric_fails() -> None:
    results = check_metrics({"auc": 0.91, "loss": 0.5, "f1": math.nan},
                            parse_bounds(["auc=0.9", "f1=0.1", "recall=0.5"], "--min"), parse_bounds(["loss=0.4"], "--max"))
    assert [(r.metric, r.bound, r.passed) for r in results] == [
        ("auc", "min", True), ("f1", "min", False), ("recall", "min", False), ("loss", "max", False)]


@pytest.mark.parametrize("item", ["auc", "auc=", "=0.3", "auc=high"])
def test_a_malformed_bound_names_the_option_and_the_form(item: str) -> None:
    with pytest.raises(InvalidRequest, match=r"--min .* is not METRIC=NUMBER"):
        parse_bounds([item], "--min")


def test_a_gate_without_bounds_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at least one bound"):
        check_metrics({"auc": 1.0}, {}, {})
