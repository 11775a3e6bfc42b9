"""Dataset tables: versions identified by content, aliases, and the runs that produced or read them.

A new version is written in one transaction with its artifacts, their lineage, its alias and its
first use, so a registration that fails at any point leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, new_id, now
from conveyor.store.metadata.records import NewArtifact


@dataclass(frozen=True, slots=True)
class DatasetVersionRecord:
    """One version of a dataset."""

    id: str
    dataset: str
    version: int
    content_hash: str
    kind: str                      # table | files
    artifact_id: str               # the Arrow table, or the manifest of a file set
    profile_artifact_id: str | None
    schema: list[dict[str, Any]]
    num_rows: int | None
    num_files: int | None
    size: int | None
    source: str | None
    run_id: str | None
    step_run_id: str | None
    created_at: float
    created_by: str | None
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.dataset}:{self.version}"


@dataclass(frozen=True, slots=True)
class DatasetUse:
    """A run that produced (registered) or read a version."""

    dataset: str
    version: int
    role: str                      # produced | read
    run_id: str | None
    step_run_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class NewDatasetVersion:
    """What a registration writes; ``artifacts[0]`` is the data (or manifest), ``profile`` optional."""

    dataset: str
    content_hash: str
    kind: str
    artifacts: Sequence[NewArtifact]
    profile: NewArtifact | None
    schema: list[dict[str, Any]]
    num_rows: int | None
    num_files: int | None
    size: int | None
    source: str | None


def _version(row: Any, aliases: tuple[str, ...] = ()) -> DatasetVersionRecord:
    return DatasetVersionRecord(
        id=row.id, dataset=row.dataset, version=row.version, content_hash=row.content_hash, kind=row.kind,
        artifact_id=row.artifact_id, profile_artifact_id=row.profile_artifact_id, schema=row.schema or [],
        num_rows=row.num_rows, num_files=row.num_files, size=row.size, source=row.source, run_id=row.run_id,
        step_run_id=row.step_run_id, created_at=row.created_at, created_by=row.created_by, aliases=aliases)


class Datasets(Repository):
    """SQL for versioned datasets; parsing references and reading data live in ``conveyor.data``."""

    # --- writing ------------------------------------------------------------------------------

    def add_version(self, new: NewDatasetVersion, *, actor: str, run_id: str | None, step_run_id: str | None,
                    alias: str | None = None) -> tuple[DatasetVersionRecord, bool]:
        """Register ``new`` (or find the version with the same content); True when it is new.

        Outside any run a finished tracking run (``register dataset NAME``) is written in the same
        transaction, so every version has the run that produced it.
        """
        ts = now()
        with self.write() as conn:
            existing = conn.execute(select(t.dataset_versions).where(
                t.dataset_versions.c.dataset == new.dataset,
                t.dataset_versions.c.content_hash == new.content_hash)).first()
            if existing is not None:
                self._use(conn, new.dataset, existing.version, "produced", run_id, step_run_id, ts)
                if alias:
                    self._move_alias(conn, new.dataset, alias, existing.version, actor, ts)
                return _version(existing), False
            if run_id is None or step_run_id is None:
                run_id, step_run_id = self._registration_run(conn, new.dataset, run_id, ts)
            arts = [*new.artifacts, *([new.profile] if new.profile else [])]
            conn.execute(insert(t.artifacts), [dict(
                id=a.id, content_hash=a.content_hash, materializer=a.materializer,
                materializer_version=a.materializer_version, type_name=a.type_name, size=a.size, uri=a.uri,
                inline=a.inline, meta=a.meta, name=a.name, run_id=run_id, step_run_id=step_run_id,
                created_at=ts) for a in arts])
            conn.execute(insert(t.lineage), [dict(artifact_id=a.id, step_run_id=step_run_id, run_id=run_id,
                                                  direction="output", name=a.name, position=None) for a in arts])
            if conn.execute(select(t.datasets.c.name).where(t.datasets.c.name == new.dataset)).first() is None:
                conn.execute(insert(t.datasets).values(name=new.dataset, created_at=ts, created_by=actor))
            number = (conn.execute(select(func.max(t.dataset_versions.c.version))
                                   .where(t.dataset_versions.c.dataset == new.dataset)).scalar() or 0) + 1
            vid = new_id()
            conn.execute(insert(t.dataset_versions).values(
                id=vid, dataset=new.dataset, version=number, content_hash=new.content_hash, kind=new.kind,
                artifact_id=new.artifacts[0].id, profile_artifact_id=new.profile.id if new.profile else None,
                schema=new.schema, num_rows=new.num_rows, num_files=new.num_files, size=new.size,
                source=new.source, run_id=run_id, step_run_id=step_run_id, created_at=ts, created_by=actor))
            self._use(conn, new.dataset, number, "produced", run_id, step_run_id, ts)
            if alias:
                self._move_alias(conn, new.dataset, alias, number, actor, ts)
            row = conn.execute(select(t.dataset_versions).where(t.dataset_versions.c.id == vid)).one()
        return _version(row, (alias,) if alias else ()), True

    @staticmethod
    def _registration_run(conn: Connection, dataset: str, run_id: str | None, ts: float) -> tuple[str, str]:
        if run_id is None:
            run_id = new_id()
            conn.execute(insert(t.runs).values(id=run_id, name=f"register dataset {dataset}", kind="tracking",
                                               status="succeeded", parameters={}, tags={}, options={},
                                               created_at=ts, started_at=ts, ended_at=ts))
            conn.execute(insert(t.run_events).values(run_id=run_id, at=ts, kind="succeeded", detail=None))
        sid = new_id()
        conn.execute(insert(t.step_runs).values(id=sid, run_id=run_id, name="register_dataset",
                                                step="register_dataset", status="succeeded", attempts=1,
                                                cache_hit=False, started_at=ts, ended_at=ts))
        return run_id, sid

    @staticmethod
    def _use(conn: Connection, dataset: str, version: int, role: str, run_id: str | None,
             step_run_id: str | None, ts: float) -> None:
        conn.execute(insert(t.dataset_usage).values(dataset=dataset, version=version, role=role, run_id=run_id,
                                                    step_run_id=step_run_id, at=ts))

    @staticmethod
    def _move_alias(conn: Connection, dataset: str, alias: str, version: int | None, actor: str, ts: float) -> None:
        where = (t.dataset_aliases.c.dataset == dataset) & (t.dataset_aliases.c.alias == alias)
        conn.execute(delete(t.dataset_aliases).where(where))
        if version is not None:
            conn.execute(insert(t.dataset_aliases).values(dataset=dataset, alias=alias, version=version,
                                                          updated_at=ts, updated_by=actor))

    def move_alias(self, dataset: str, alias: str, version: int | None, actor: str) -> None:
        """Point ``alias`` at ``version`` (None removes it)."""
        with self.write() as conn:
            self._move_alias(conn, dataset, alias, version, actor, now())

    def record_read(self, dataset: str, version: int, *, run_id: str | None, step_run_id: str | None,
                    artifact_id: str, input_name: str) -> None:
        """Note that a run read a version; inside a step the data also becomes the step's input."""
        ts = now()
        with self.write() as conn:
            self._use(conn, dataset, version, "read", run_id, step_run_id, ts)
            if step_run_id and run_id and conn.execute(
                    select(t.step_runs.c.id).where(t.step_runs.c.id == step_run_id)).first() is not None:
                conn.execute(insert(t.lineage).values(artifact_id=artifact_id, step_run_id=step_run_id,
                                                      run_id=run_id, direction="input", name=input_name,
                                                      position=None))

    # --- reading ------------------------------------------------------------------------------

    def exists(self, dataset: str) -> bool:
        with self.read() as conn:
            return conn.execute(select(t.datasets.c.name).where(t.datasets.c.name == dataset)).first() is not None

    def names(self) -> list[str]:
        with self.read() as conn:
            return [r.name for r in conn.execute(select(t.datasets.c.name).order_by(t.datasets.c.name))]

    def summary(self) -> list[dict[str, Any]]:
        """Every dataset with its version count, latest version and aliases."""
        with self.read() as conn:
            counts = {r.dataset: (r.n, r.latest) for r in conn.execute(
                select(t.dataset_versions.c.dataset, func.count().label("n"),
                       func.max(t.dataset_versions.c.version).label("latest"))
                .group_by(t.dataset_versions.c.dataset))}
            aliases: dict[str, dict[str, int]] = {}
            for r in conn.execute(select(t.dataset_aliases)):
                aliases.setdefault(r.dataset, {})[r.alias] = r.version
            names = [r.name for r in conn.execute(select(t.datasets.c.name).order_by(t.datasets.c.name))]
        return [{"name": n, "versions": counts.get(n, (0, None))[0], "latest": counts.get(n, (0, None))[1],
                 "aliases": aliases.get(n, {})} for n in names]

    def aliases(self, dataset: str) -> dict[str, int]:
        with self.read() as conn:
            return {r.alias: r.version for r in conn.execute(
                select(t.dataset_aliases).where(t.dataset_aliases.c.dataset == dataset))}

    def latest(self, dataset: str) -> int | None:
        with self.read() as conn:
            return conn.execute(select(func.max(t.dataset_versions.c.version))
                                .where(t.dataset_versions.c.dataset == dataset)).scalar()

    def version(self, dataset: str, number: int) -> DatasetVersionRecord | None:
        with self.read() as conn:
            row = conn.execute(select(t.dataset_versions).where(t.dataset_versions.c.dataset == dataset,
                                                                t.dataset_versions.c.version == number)).first()
        if row is None:
            return None
        return _version(row, tuple(sorted(a for a, v in self.aliases(dataset).items() if v == number)))

    def versions(self, dataset: str) -> list[DatasetVersionRecord]:
        by_version: dict[int, list[str]] = {}
        for alias, number in self.aliases(dataset).items():
            by_version.setdefault(number, []).append(alias)
        with self.read() as conn:
            rows = conn.execute(select(t.dataset_versions).where(t.dataset_versions.c.dataset == dataset)
                                .order_by(t.dataset_versions.c.version))
            return [_version(r, tuple(sorted(by_version.get(r.version, [])))) for r in rows]

    def by_content(self, dataset: str, content_hash: str) -> DatasetVersionRecord | None:
        """The version of ``dataset`` with this content, if there is one."""
        with self.read() as conn:
            row = conn.execute(select(t.dataset_versions).where(
                t.dataset_versions.c.dataset == dataset, t.dataset_versions.c.content_hash == content_hash)).first()
        return None if row is None else _version(row)

    def latest_of_kind(self, dataset: str, kind: str) -> DatasetVersionRecord | None:
        """The newest version of ``kind`` (a file set's manifest is reused by the next registration)."""
        with self.read() as conn:
            row = conn.execute(select(t.dataset_versions).where(t.dataset_versions.c.dataset == dataset,
                                                                t.dataset_versions.c.kind == kind)
                               .order_by(t.dataset_versions.c.version.desc()).limit(1)).first()
        return None if row is None else _version(row)

    def usage(self, dataset: str, version: int) -> list[DatasetUse]:
        """Every run that produced or read the version, oldest first."""
        with self.read() as conn:
            rows = conn.execute(select(t.dataset_usage).where(t.dataset_usage.c.dataset == dataset,
                                                              t.dataset_usage.c.version == version)
                                .order_by(t.dataset_usage.c.id))
            return [DatasetUse(r.dataset, r.version, r.role, r.run_id, r.step_run_id, r.at) for r in rows]

    def read_by_run(self, run_id: str) -> list[DatasetUse]:
        """The dataset versions a run produced or read."""
        with self.read() as conn:
            rows = conn.execute(select(t.dataset_usage).where(t.dataset_usage.c.run_id == run_id)
                                .order_by(t.dataset_usage.c.id))
            return [DatasetUse(r.dataset, r.version, r.role, r.run_id, r.step_run_id, r.at) for r in rows]


__all__ = ["DatasetUse", "DatasetVersionRecord", "Datasets", "NewDatasetVersion"]
