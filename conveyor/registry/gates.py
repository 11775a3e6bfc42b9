"""Metric gates on a model version: the check a delivery pipeline runs before asking for approval."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class GateResult:
    """One bound checked against a version's metric."""

    metric: str
    bound: str            # "min" or "max"
    threshold: float
    value: float | None   # None: the version has no such metric

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.bound == "min" else self.value <= self.threshold


def parse_bounds(items: list[str], option: str) -> dict[str, float]:
    """``["auc=0.8", ...]`` as ``{"auc": 0.8}``; a malformed item names the option and the form."""
    bounds: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            bounds[name.strip()] = float(text)
        except ValueError:
            raise InvalidRequest(f"{option} {item!r} is not METRIC=NUMBER (for example {option} auc=0.8).") from None
    return bounds


def check_metrics(metrics: Mapping[str, Any], minimums: Mapping[str, float],
                  maximums: Mapping[str, float]) -> list[GateResult]:
    """Every bound, in the order given; a missing metric fails its bound."""
    if not minimums and not maximums:
        raise InvalidRequest("A gate needs at least one bound: --min METRIC=NUMBER or --max METRIC=NUMBER.")

    def value(name: str) -> float | None:
        v = metrics.get(name)
        return None if v is None else float(v)

    return ([GateResult(m, "min", t, value(m)) for m, t in minimums.items()]
            + [GateResult(m, "max", t, value(m)) for m, t in maximums.items()])
