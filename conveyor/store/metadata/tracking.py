"""Metrics and parameters logged by steps and by tracking runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, select

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, now
from conveyor.store.metadata.records import MetricRecord


class Tracking(Repository):
    """Reads and writes metrics and params."""

    def log_metrics(self, run_id: str, items: Iterable[tuple[str, float, int | None]],
                    step_run_id: str | None = None) -> None:
        rows = [dict(run_id=run_id, step_run_id=step_run_id, key=k, value=float(v), step=s, at=now())
                for k, v, s in items]
        if rows:
            with self.write() as conn:
                conn.execute(insert(t.metrics), rows)

    def log_params(self, run_id: str, values: Mapping[str, Any], step_run_id: str | None = None) -> None:
        if values:
            with self.write() as conn:
                conn.execute(insert(t.params), [dict(run_id=run_id, step_run_id=step_run_id, key=k, value=v)
                                                for k, v in values.items()])

    def metrics(self, run_id: str) -> list[MetricRecord]:
        with self.read() as conn:
            rows = conn.execute(select(t.metrics).where(t.metrics.c.run_id == run_id).order_by(t.metrics.c.id))
            return [MetricRecord(r.key, r.value, r.step, r.at, r.step_run_id) for r in rows]

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The last value logged for each metric key."""
        return {m.key: m.value for m in self.metrics(run_id)}

    def params(self, run_id: str) -> dict[str, Any]:
        with self.read() as conn:
            rows = conn.execute(select(t.params.c.key, t.params.c.value).where(t.params.c.run_id == run_id)
                                .order_by(t.params.c.id))
            return {r.key: r.value for r in rows}
