"""The cost report: compute, storage and serving over a window, priced from the price table.

Every figure is an estimate, and the report says so with the table's date:

- compute: each attempt of a step is charged ``max(CPU seconds, wall seconds)`` as vCPU-seconds
  (at least one core held while it ran, more if it used more), at the price of a vCPU-hour of
  the cloud's reference instance; GPU seconds at the cheapest listed GPU-hour. A step run without
  measures counts its duration on one core.
- storage: the bytes the store holds now for each group (``storage.py``), held for the window, at
  the cloud's default storage class per GB-month.
- serving: the CPU seconds servers spent per endpoint and model version (``serving_usage``), at
  the same vCPU-hour, also given per 1,000 requests.

Grouping (``by``): ``pipeline``, ``step`` (pipeline/step), ``tag`` (each ``key=value`` of a run's
tags or an endpoint's; a run with two tags counts in both, so tag rows do not add up),
``model`` (a run's compute is split evenly among the models it registered; serving by model),
``endpoint`` (serving by endpoint; compute and storage in one row each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.cost.prices import PriceTable
from conveyor.cost.storage import bytes_of, tag_keys
from conveyor.cost.usage import endpoint_tags, models_by_run, serving_usage, step_usage
from conveyor.errors import InvalidRequest

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

GROUPINGS = ("pipeline", "step", "tag", "model", "endpoint")
DAYS_PER_MONTH = 30.44
GB = 10**9


@dataclass(slots=True)
class CostRow:
    """One group's estimated cost over the window."""

    name: str
    vcpu_hours: float = 0.0
    gpu_hours: float = 0.0
    compute: float = 0.0
    storage_bytes: int = 0
    storage: float = 0.0
    requests: int = 0
    serving_cpu_s: float = 0.0
    serving: float = 0.0

    @property
    def total(self) -> float:
        return self.compute + self.storage + self.serving

    @property
    def cpu_s_per_1k_requests(self) -> float | None:
        return self.serving_cpu_s / self.requests * 1000 if self.requests else None

    @property
    def serving_per_1k_requests(self) -> float | None:
        return self.serving / self.requests * 1000 if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vcpu_hours": round(self.vcpu_hours, 6), "gpu_hours": round(self.gpu_hours, 6),
                "compute": round(self.compute, 6), "storage_bytes": self.storage_bytes,
                "storage": round(self.storage, 6), "requests": self.requests,
                "serving_cpu_s": round(self.serving_cpu_s, 6), "serving": round(self.serving, 6),
                "cpu_s_per_1k_requests": self.cpu_s_per_1k_requests,
                "serving_per_1k_requests": self.serving_per_1k_requests, "total": round(self.total, 6)}


@dataclass(slots=True)
class CostReport:
    """The rows of a report and what they were priced with."""

    by: str
    since: float
    until: float
    cloud: str
    spot: bool
    prices: PriceTable
    rows: list[CostRow] = field(default_factory=list)
    unmeasured_attempts: int = 0

    @property
    def note(self) -> str:
        table = self.prices.cloud(self.cloud)
        kind = "spot" if self.spot else "on-demand"
        storage = table.storage_class()
        return (f"Estimates, not a bill: priced with the {self.prices.describe()}, {self.cloud} {table.region} "
                f"{kind}: {self.prices.currency} {table.vcpu_hour(spot=self.spot):.4f} per vCPU-hour "
                f"({table.reference_instance}), {storage.name} storage {storage.per_gb_month} per GB-month.")

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": True, "note": self.note, "prices_as_of": self.prices.as_of.isoformat(),
                "prices_source": self.prices.origin, "currency": self.prices.currency, "cloud": self.cloud,
                "spot": self.spot, "by": self.by, "since": self.since, "until": self.until,
                "unmeasured_attempts": self.unmeasured_attempts,
                "rows": [r.to_dict() for r in self.rows],
                "total": round(sum(r.total for r in self.rows), 6) if self.by != "tag" else None}


def cost_report(metadata: MetadataStore, prices: PriceTable, *, since_s: float, by: str = "pipeline", cloud: str = "aws",
                spot: bool = False, now: float | None = None) -> CostReport:
    """Estimate what the last ``since_s`` seconds cost, grouped ``by``."""
    if by not in GROUPINGS:
        raise InvalidRequest(f"--by {by!r} is not a grouping of the cost report. Use one of: {', '.join(GROUPINGS)}.")
    table = prices.cloud(cloud)
    now = time.time() if now is None else now
    since = now - since_s
    vcpu_h, gpu_h = table.vcpu_hour(spot=spot), table.gpu_hour(spot=spot) or 0.0
    per_gb = table.storage_class().per_gb_month * (since_s / 86400.0 / DAYS_PER_MONTH)
    report = CostReport(by=by, since=since, until=now, cloud=cloud, spot=spot, prices=prices)
    rows: dict[str, CostRow] = {}

    def row(name: str) -> CostRow:
        return rows.setdefault(name, CostRow(name))

    models = models_by_run(metadata) if by == "model" else {}
    for attempt in step_usage(metadata, since=since):
        report.unmeasured_attempts += 0 if attempt.measured else 1
        if by == "pipeline":
            shares = [(attempt.pipeline, 1.0)]
        elif by == "step":
            shares = [(f"{attempt.pipeline}/{attempt.step}", 1.0)]
        elif by == "tag":
            shares = [(k, 1.0) for k in tag_keys(attempt.tags)]
        elif by == "model":
            names = models.get(attempt.run_id) or ["(no model)"]
            shares = [(n, 1.0 / len(names)) for n in names]
        else:
            shares = [("(pipelines)", 1.0)]
        for name, share in shares:
            r = row(name)
            r.vcpu_hours += attempt.vcpu_hours * share
            r.gpu_hours += attempt.gpu_hours * share
            r.compute += (attempt.vcpu_hours * vcpu_h + attempt.gpu_hours * gpu_h) * share

    stored = bytes_of(metadata, "pipeline" if by == "endpoint" else by)
    for name, size in stored.items():
        r = row("(storage)" if by == "endpoint" else name)
        r.storage_bytes += size
        r.storage += size / GB * per_gb

    tags = endpoint_tags(metadata) if by == "tag" else {}
    for use in serving_usage(metadata, since=since):
        if by == "endpoint":
            names = [use.endpoint]
        elif by == "model":
            names = [use.model or "(no model)"]
        elif by == "tag":
            names = tag_keys(tags.get(use.endpoint))
        else:
            names = ["(serving)"]
        for name in names:
            r = row(name)
            r.requests += use.requests
            r.serving_cpu_s += use.cpu_s
            r.serving += use.cpu_s / 3600.0 * vcpu_h
    report.rows = sorted(rows.values(), key=lambda r: (-r.total, r.name))
    return report
