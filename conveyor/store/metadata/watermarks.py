"""Watermarks of incremental reads: how far a data source was read, per pipeline.

A run stages the position it reached (``stage``); that position counts only once the run
succeeded, so a failed or cancelled run leaves the next one starting where the last good one
stopped. Code outside a run commits directly (``commit``), after its own work succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, or_, select

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, now


@dataclass(frozen=True, slots=True)
class WatermarkRecord:
    """A position a source reached: ``value`` as the source gave it (JSON), the run that got there."""

    pipeline: str
    source: str
    value: Any
    run_id: str | None
    created_at: float


class Watermarks(Repository):
    """The ``data_watermarks`` table."""

    def current(self, pipeline: str, source: str) -> WatermarkRecord | None:
        """The newest watermark that counts: committed, or staged by a run that succeeded."""
        w, r = t.data_watermarks, t.runs
        succeeded = select(r.c.id).where(r.c.status == "succeeded")
        query = (select(w).where(w.c.pipeline == pipeline, w.c.source == source,
                                 or_(w.c.state == "committed",
                                     and_(w.c.state == "pending", w.c.run_id.in_(succeeded))))
                 .order_by(w.c.id.desc()).limit(1))
        with self.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else WatermarkRecord(row.pipeline, row.source, row.value, row.run_id,
                                                        row.created_at)

    def stage(self, pipeline: str, source: str, value: Any, run_id: str) -> None:
        """Record the position a run reached; it counts once the run succeeded."""
        self._add(pipeline, source, value, run_id, "pending")

    def commit(self, pipeline: str, source: str, value: Any) -> None:
        """Record a position that counts now (the work that read up to it succeeded)."""
        self._add(pipeline, source, value, None, "committed")

    def _add(self, pipeline: str, source: str, value: Any, run_id: str | None, state: str) -> None:
        with self.write() as conn:
            conn.execute(insert(t.data_watermarks).values(pipeline=pipeline, source=source[:500], value=value,
                                                          run_id=run_id, state=state, created_at=now()))
