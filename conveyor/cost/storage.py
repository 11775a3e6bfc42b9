"""Bytes in the artifact store, by pipeline, by model and by dataset, read from the metadata.

Objects are stored once by content, so inside one group an object counts once however many
artifacts name it; across groups it counts in each (a model's bytes are also its pipeline's), and
``unique_bytes`` is what the store holds in all. Inline values live in the database and count
nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, literal, or_, select

from conveyor.store.metadata import tables as t

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

GROUPINGS = ("pipeline", "model", "dataset")
NO_RUN = "(outside runs)"


@dataclass(frozen=True, slots=True)
class StorageRow:
    """One group: how many distinct objects and how many bytes it keeps in the store."""

    name: str
    objects: int
    bytes: int
    versions: int | None = None          # models and datasets: how many versions
    referenced_bytes: int | None = None  # datasets of files: the bytes their manifests describe (not copied)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "objects": self.objects, "bytes": self.bytes}
        if self.versions is not None:
            out["versions"] = self.versions
        if self.referenced_bytes is not None:
            out["referenced_bytes"] = self.referenced_bytes
        return out


def _grouped(conn: Any, pairs: Any) -> dict[str, tuple[int, int]]:
    """group -> (objects, bytes) from a select of (grp, content_hash, size), each object once per group."""
    distinct = pairs.distinct().subquery()
    rows = conn.execute(select(distinct.c.grp, func.count(), func.coalesce(func.sum(distinct.c.size), 0))
                        .group_by(distinct.c.grp))
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def bytes_by_pipeline(conn: Any) -> list[StorageRow]:
    a, r = t.artifacts, t.runs
    grp = func.coalesce(r.c.pipeline_name, r.c.name, literal(NO_RUN)).label("grp")
    pairs = (select(grp, a.c.content_hash, a.c.size).select_from(a.outerjoin(r, r.c.id == a.c.run_id))
             .where(a.c.uri.isnot(None)))
    return [StorageRow(name, n, b) for name, (n, b) in _grouped(conn, pairs).items()]


def bytes_by_model(conn: Any) -> list[StorageRow]:
    a, mv = t.artifacts, t.model_versions
    pairs = (select(mv.c.model.label("grp"), a.c.content_hash, a.c.size)
             .join(a, or_(a.c.id == mv.c.artifact_id, a.c.id == mv.c.profile_artifact_id))
             .where(a.c.uri.isnot(None)))
    sizes = _grouped(conn, pairs)
    versions = dict(conn.execute(select(mv.c.model, func.count()).group_by(mv.c.model)).all())
    return [StorageRow(name, *sizes.get(name, (0, 0)), versions=int(n)) for name, n in versions.items()]


def bytes_by_dataset(conn: Any) -> list[StorageRow]:
    a, dv = t.artifacts, t.dataset_versions
    pairs = (select(dv.c.dataset.label("grp"), a.c.content_hash, a.c.size)
             .join(a, or_(a.c.id == dv.c.artifact_id, a.c.id == dv.c.profile_artifact_id))
             .where(a.c.uri.isnot(None)))
    sizes = _grouped(conn, pairs)
    files = func.sum(func.coalesce(dv.c.size, 0)).filter(dv.c.kind == "files")
    rows = conn.execute(select(dv.c.dataset, func.count(), files).group_by(dv.c.dataset)).all()
    return [StorageRow(name, *sizes.get(name, (0, 0)), versions=int(n), referenced_bytes=int(ref or 0))
            for name, n, ref in rows]


def storage_usage(metadata: MetadataStore, by: str) -> tuple[list[StorageRow], int, int]:
    """(rows biggest first, unique objects, unique bytes) of what the metadata says the store holds."""
    if by not in GROUPINGS:
        from conveyor.errors import InvalidRequest

        raise InvalidRequest(f"--by {by!r} is not a grouping of storage. Use one of: {', '.join(GROUPINGS)}.")
    reader = {"pipeline": bytes_by_pipeline, "model": bytes_by_model, "dataset": bytes_by_dataset}[by]
    a = t.artifacts
    with metadata.artifacts.read() as conn:
        rows = reader(conn)
        unique = select(a.c.content_hash, a.c.size).where(a.c.uri.isnot(None)).distinct().subquery()
        n, total = conn.execute(select(func.count(), func.coalesce(func.sum(unique.c.size), 0))).one()
    return sorted(rows, key=lambda row: (-row.bytes, row.name)), int(n), int(total)


def bytes_of(metadata: MetadataStore, by: str) -> dict[str, int]:
    """group -> bytes, for ``pipeline``, ``step`` (pipeline/step), ``model`` or ``tag`` (key=value)."""
    a, r, s = t.artifacts, t.runs, t.step_runs
    with metadata.artifacts.read() as conn:
        if by == "model":
            return {row.name: row.bytes for row in bytes_by_model(conn)}
        if by == "pipeline":
            return {row.name: row.bytes for row in bytes_by_pipeline(conn)}
        if by == "step":
            grp = (func.coalesce(r.c.pipeline_name, r.c.name, literal(NO_RUN)) + literal("/")
                   + func.coalesce(s.c.step, literal("(no step)"))).label("grp")
            pairs = (select(grp, a.c.content_hash, a.c.size)
                     .select_from(a.outerjoin(r, r.c.id == a.c.run_id).outerjoin(s, s.c.id == a.c.step_run_id))
                     .where(a.c.uri.isnot(None)))
            return {k: v[1] for k, v in _grouped(conn, pairs).items()}
        if by == "tag":
            rows = conn.execute(select(r.c.tags, a.c.content_hash, a.c.size)
                                .select_from(a.outerjoin(r, r.c.id == a.c.run_id)).where(a.c.uri.isnot(None)))
            seen: dict[str, dict[str, int]] = {}
            for tags, digest, size in rows:
                for key in tag_keys(tags):
                    seen.setdefault(key, {})[digest] = int(size or 0)
            return {k: sum(v.values()) for k, v in seen.items()}
    return {}


def tag_keys(tags: Any) -> list[str]:
    """``key=value`` for each tag (the allocation keys), or ``(untagged)``."""
    if not tags:
        return ["(untagged)"]
    return [f"{k}={v}" for k, v in sorted(dict(tags).items())]


__all__ = ["GROUPINGS", "StorageRow", "bytes_of", "storage_usage", "tag_keys"]
