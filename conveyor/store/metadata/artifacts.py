"""Artifact records and lineage queries (upstream and downstream)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from conveyor.errors import NotFound
from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository
from conveyor.store.metadata.records import ArtifactRecord


def artifact_record(row: Any) -> ArtifactRecord:
    """Build a record from a row that has the artifacts table's columns."""
    return ArtifactRecord(
        id=row.id, content_hash=row.content_hash, materializer=row.materializer,
        materializer_version=row.materializer_version, type_name=row.type_name, size=row.size, uri=row.uri,
        inline=row.inline, meta=row.meta or {}, name=row.name, run_id=row.run_id, step_run_id=row.step_run_id,
        created_at=row.created_at,
    )


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """A step run that produced or consumed an artifact."""

    artifact_id: str
    step_run_id: str
    step_name: str
    run_id: str
    direction: str
    name: str


class Artifacts(Repository):
    """Reads artifacts and walks lineage."""

    def get(self, artifact_id: str) -> ArtifactRecord:
        """An artifact by id or unique prefix."""
        with self.read() as conn:
            row = conn.execute(select(t.artifacts).where(t.artifacts.c.id == artifact_id)).first()
            if row is None and len(artifact_id) >= 4:
                rows = conn.execute(select(t.artifacts).where(t.artifacts.c.id.like(f"{artifact_id}%")).limit(2)).all()
                if len(rows) > 1:
                    raise NotFound(f"Artifact id prefix '{artifact_id}' matches several artifacts; give more characters.")
                row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No artifact '{artifact_id}'. See a run's artifacts with `conveyor runs show RUN_ID`.")
        return artifact_record(row)

    def edges(self, artifact_id: str) -> list[LineageEdge]:
        """Every step run that produced or consumed this artifact."""
        with self.read() as conn:
            rows = conn.execute(
                select(t.lineage, t.step_runs.c.name.label("step_name"))
                .join(t.step_runs, t.step_runs.c.id == t.lineage.c.step_run_id)
                .where(t.lineage.c.artifact_id == artifact_id))
            return [LineageEdge(r.artifact_id, r.step_run_id, r.step_name, r.run_id, r.direction, r.name) for r in rows]

    def step_edges(self, step_run_id: str) -> list[LineageEdge]:
        """The inputs and outputs of one step run."""
        with self.read() as conn:
            rows = conn.execute(
                select(t.lineage, t.step_runs.c.name.label("step_name"))
                .join(t.step_runs, t.step_runs.c.id == t.lineage.c.step_run_id)
                .where(t.lineage.c.step_run_id == step_run_id).order_by(t.lineage.c.id))
            return [LineageEdge(r.artifact_id, r.step_run_id, r.step_name, r.run_id, r.direction, r.name) for r in rows]

    def for_run(self, run_id: str) -> list[tuple[str, str, ArtifactRecord]]:
        """(step name, output name, artifact) for every output of a run."""
        with self.read() as conn:
            rows = conn.execute(
                select(t.step_runs.c.name.label("step_name"), t.lineage.c.name.label("out_name"), t.artifacts)
                .join(t.lineage, t.lineage.c.step_run_id == t.step_runs.c.id)
                .join(t.artifacts, t.artifacts.c.id == t.lineage.c.artifact_id)
                .where(t.step_runs.c.run_id == run_id, t.lineage.c.direction == "output")
                .order_by(t.step_runs.c.started_at))
            return [(r.step_name, r.out_name, artifact_record(r)) for r in rows]
