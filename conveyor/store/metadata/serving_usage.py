"""What servers spent per endpoint and model version: the ``serving_usage`` table.

A server counts requests, errors, CPU and wall time in memory and writes one row per
(endpoint, model, version) and period; a period of several workers or hosts is several rows,
summed when read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import func, insert, select

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One server's counts for one endpoint and version over ``[period_start, period_end]`` (epoch seconds).

    ``model`` and ``version`` are None for failed requests no version answered (an unknown
    endpoint, a body refused before a version was chosen).
    """

    endpoint: str
    model: str | None
    version: int | None
    period_start: float
    period_end: float
    requests: int
    errors: int
    cpu_s: float
    wall_s: float
    host: str | None = None


class ServingUsage(Repository):
    """The ``serving_usage`` table."""

    def record(self, records: Iterable[UsageRecord]) -> int:
        """Write the records in one transaction; returns how many."""
        rows = [asdict(r) for r in records]
        if rows:
            with self.write() as conn:
                conn.execute(insert(t.serving_usage), rows)
        return len(rows)

    def periods(self, since: float | None = None) -> list[UsageRecord]:
        """Every recorded period (ending after ``since``), oldest first, one per server and version."""
        u = t.serving_usage
        query = select(u).order_by(u.c.period_start)
        if since is not None:
            query = query.where(u.c.period_end >= since)
        with self.read() as conn:
            return [UsageRecord(r.endpoint, r.model, r.version, r.period_start, r.period_end, r.requests, r.errors,
                                r.cpu_s, r.wall_s, r.host) for r in conn.execute(query)]

    def totals(self, endpoint: str | None = None, since: float | None = None) -> list[UsageRecord]:
        """Sums per (endpoint, model, version) over every period (ending after ``since``), hosts together."""
        u = t.serving_usage
        query = (select(u.c.endpoint, u.c.model, u.c.version, func.min(u.c.period_start), func.max(u.c.period_end),
                        func.sum(u.c.requests), func.sum(u.c.errors), func.sum(u.c.cpu_s), func.sum(u.c.wall_s))
                 .group_by(u.c.endpoint, u.c.model, u.c.version).order_by(u.c.endpoint, u.c.model, u.c.version))
        if endpoint is not None:
            query = query.where(u.c.endpoint == endpoint)
        if since is not None:
            query = query.where(u.c.period_end >= since)
        with self.read() as conn:
            return [UsageRecord(e, m, v, float(s), float(end), int(n), int(err), float(cpu), float(wall))
                    for e, m, v, s, end, n, err, cpu, wall in conn.execute(query)]


__all__ = ["ServingUsage", "UsageRecord"]
