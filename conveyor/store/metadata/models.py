"""Registry tables: models, versions, aliases (with history), approvals, roles and the audit log.

Every change writes its audit entry in the same transaction, so the log cannot miss an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, new_id, now


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One registered model version."""

    id: str
    model: str
    version: int
    artifact_id: str
    run_id: str | None
    step_run_id: str | None
    metrics: dict[str, Any]
    tags: dict[str, Any]
    signature: dict[str, Any] | None
    profile_artifact_id: str | None
    approval: str
    created_at: float
    created_by: str | None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One registry action."""

    id: int
    at: float
    actor: str
    action: str
    model: str | None
    version: int | None
    alias: str | None
    before: Any
    after: Any
    detail: str | None


def _version(row: Any, aliases: tuple[str, ...] = ()) -> VersionRecord:
    return VersionRecord(id=row.id, model=row.model, version=row.version, artifact_id=row.artifact_id,
                         run_id=row.run_id, step_run_id=row.step_run_id, metrics=row.metrics or {},
                         tags=row.tags or {}, signature=row.signature, profile_artifact_id=row.profile_artifact_id,
                         approval=row.approval, created_at=row.created_at, created_by=row.created_by, aliases=aliases)


def audit(conn: Connection, actor: str, action: str, *, model: str | None = None, version: int | None = None,
          alias: str | None = None, before: Any = None, after: Any = None, detail: str | None = None) -> None:
    """Append one audit entry inside the caller's transaction."""
    conn.execute(insert(t.audit_log).values(at=now(), actor=actor, action=action, model=model, version=version,
                                            alias=alias, before=before, after=after, detail=detail))


def bump_state(conn: Connection, key: str = "serving") -> None:
    """Advance the counter that running servers poll."""
    updated = conn.execute(update(t.state_versions).where(t.state_versions.c.key == key)
                           .values(version=t.state_versions.c.version + 1)).rowcount
    if not updated:
        conn.execute(insert(t.state_versions).values(key=key, version=1))


class Models(Repository):
    """SQL for the model registry; policy lives in ``conveyor.registry``."""

    def ensure_model(self, conn: Connection, name: str, actor: str, protected: list[str]) -> None:
        if conn.execute(select(t.models.c.name).where(t.models.c.name == name)).first() is None:
            conn.execute(insert(t.models).values(name=name, protected_aliases=protected, created_at=now(),
                                                 created_by=actor))
            audit(conn, actor, "create_model", model=name, after={"protected_aliases": protected})

    def add_version(self, name: str, *, artifact_id: str, actor: str, run_id: str | None, step_run_id: str | None,
                    metrics: dict[str, Any], tags: dict[str, Any], signature: dict[str, Any] | None,
                    profile_artifact_id: str | None, default_protected: list[str]) -> VersionRecord:
        """Register the next version number of ``name`` (numbers are per model, from 1)."""
        with self.write() as conn:
            self.ensure_model(conn, name, actor, default_protected)
            number = (conn.execute(select(func.max(t.model_versions.c.version))
                                   .where(t.model_versions.c.model == name)).scalar() or 0) + 1
            vid = new_id()
            conn.execute(insert(t.model_versions).values(
                id=vid, model=name, version=number, artifact_id=artifact_id, run_id=run_id, step_run_id=step_run_id,
                metrics=metrics, tags=tags, signature=signature, profile_artifact_id=profile_artifact_id,
                approval="pending", deleted=False, created_at=now(), created_by=actor))
            audit(conn, actor, "register", model=name, version=number,
                  after={"artifact_id": artifact_id, "run_id": run_id, "metrics": metrics})
            row = conn.execute(select(t.model_versions).where(t.model_versions.c.id == vid)).one()
        return _version(row)

    def model(self, name: str) -> Any:
        with self.read() as conn:
            return conn.execute(select(t.models).where(t.models.c.name == name)).first()

    def models(self) -> list[Any]:
        with self.read() as conn:
            return list(conn.execute(select(t.models).order_by(t.models.c.name)))

    def versions(self, name: str, *, include_deleted: bool = False) -> list[VersionRecord]:
        aliases = self.aliases(name)
        by_version: dict[int, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        q = select(t.model_versions).where(t.model_versions.c.model == name).order_by(t.model_versions.c.version)
        if not include_deleted:
            q = q.where(t.model_versions.c.deleted.is_(False))
        with self.read() as conn:
            return [_version(r, tuple(sorted(by_version.get(r.version, [])))) for r in conn.execute(q)]

    def version(self, name: str, number: int) -> VersionRecord | None:
        with self.read() as conn:
            row = conn.execute(select(t.model_versions).where(
                t.model_versions.c.model == name, t.model_versions.c.version == number,
                t.model_versions.c.deleted.is_(False))).first()
        if row is None:
            return None
        aliases = tuple(sorted(a for a, v in self.aliases(name).items() if v == number))
        return _version(row, aliases)

    def latest(self, name: str) -> int | None:
        with self.read() as conn:
            return conn.execute(select(func.max(t.model_versions.c.version)).where(
                t.model_versions.c.model == name, t.model_versions.c.deleted.is_(False))).scalar()

    def aliases(self, name: str) -> dict[str, int]:
        with self.read() as conn:
            rows = conn.execute(select(t.model_aliases.c.alias, t.model_aliases.c.version)
                                .where(t.model_aliases.c.model == name))
            return {r.alias: r.version for r in rows}

    def all_aliases(self) -> dict[tuple[str, str], int]:
        with self.read() as conn:
            rows = conn.execute(select(t.model_aliases.c.model, t.model_aliases.c.alias, t.model_aliases.c.version))
            return {(r.model, r.alias): r.version for r in rows}

    def move_alias(self, name: str, alias: str, version: int | None, actor: str, *, action: str = "alias",
                   detail: str | None = None) -> int | None:
        """Point ``alias`` at ``version`` (None removes it) atomically; returns the version it held before."""
        with self.write() as conn:
            before = conn.execute(select(t.model_aliases.c.version).where(
                t.model_aliases.c.model == name, t.model_aliases.c.alias == alias)).scalar()
            if version is None:
                conn.execute(t.model_aliases.delete().where(t.model_aliases.c.model == name,
                                                           t.model_aliases.c.alias == alias))
            elif before is None:
                conn.execute(insert(t.model_aliases).values(model=name, alias=alias, version=version, updated_at=now(),
                                                            updated_by=actor))
            else:
                conn.execute(update(t.model_aliases).where(t.model_aliases.c.model == name,
                                                           t.model_aliases.c.alias == alias)
                             .values(version=version, updated_at=now(), updated_by=actor))
            conn.execute(insert(t.alias_history).values(model=name, alias=alias, version=version, at=now(), actor=actor))
            audit(conn, actor, action, model=name, version=version, alias=alias, before={"version": before},
                  after={"version": version}, detail=detail)
            bump_state(conn)
        return before

    def alias_history(self, name: str, alias: str) -> list[tuple[int | None, float, str | None]]:
        with self.read() as conn:
            rows = conn.execute(select(t.alias_history).where(t.alias_history.c.model == name,
                                                              t.alias_history.c.alias == alias)
                                .order_by(t.alias_history.c.id))
            return [(r.version, r.at, r.actor) for r in rows]

    def decide(self, name: str, version: int, decision: str, actor: str, comment: str | None) -> None:
        """Record an approval or a rejection."""
        with self.write() as conn:
            before = conn.execute(select(t.model_versions.c.approval).where(
                t.model_versions.c.model == name, t.model_versions.c.version == version)).scalar()
            conn.execute(update(t.model_versions).where(t.model_versions.c.model == name,
                                                        t.model_versions.c.version == version)
                         .values(approval=decision))
            conn.execute(insert(t.approvals).values(model=name, version=version, decision=decision, actor=actor,
                                                    comment=comment, at=now()))
            audit(conn, actor, "approve" if decision == "approved" else "reject", model=name, version=version,
                  before={"approval": before}, after={"approval": decision}, detail=comment)

    def approvals(self, name: str, version: int) -> list[Any]:
        with self.read() as conn:
            return list(conn.execute(select(t.approvals).where(t.approvals.c.model == name,
                                                               t.approvals.c.version == version)
                                     .order_by(t.approvals.c.id)))

    def set_protected(self, name: str, aliases: list[str], actor: str) -> None:
        with self.write() as conn:
            before = conn.execute(select(t.models.c.protected_aliases).where(t.models.c.name == name)).scalar()
            conn.execute(update(t.models).where(t.models.c.name == name).values(protected_aliases=aliases))
            audit(conn, actor, "policy", model=name, before={"protected_aliases": before},
                  after={"protected_aliases": aliases})

    def delete_version(self, name: str, version: int, actor: str) -> None:
        """Soft-delete: the row stays for lineage and audit; it no longer resolves."""
        with self.write() as conn:
            conn.execute(update(t.model_versions).where(t.model_versions.c.model == name,
                                                        t.model_versions.c.version == version).values(deleted=True))
            audit(conn, actor, "delete", model=name, version=version, before={"deleted": False}, after={"deleted": True})

    def roles_of(self, actor: str) -> set[str]:
        with self.read() as conn:
            return {r.role for r in conn.execute(select(t.roles.c.role).where(t.roles.c.actor == actor))}

    def grant(self, actor: str, role: str, by: str) -> None:
        with self.write() as conn:
            if conn.execute(select(t.roles).where(t.roles.c.actor == actor, t.roles.c.role == role)).first() is None:
                conn.execute(insert(t.roles).values(actor=actor, role=role, granted_at=now(), granted_by=by))
                audit(conn, by, "grant", after={"actor": actor, "role": role})

    def revoke(self, actor: str, role: str, by: str) -> None:
        with self.write() as conn:
            gone = conn.execute(t.roles.delete().where(t.roles.c.actor == actor, t.roles.c.role == role)).rowcount
            if gone:
                audit(conn, by, "revoke", before={"actor": actor, "role": role})

    def admins(self) -> list[str]:
        """Actors holding the admin role, sorted."""
        with self.read() as conn:
            return sorted(r.actor for r in conn.execute(select(t.roles.c.actor).where(t.roles.c.role == "admin")))

    def role_grants(self) -> list[tuple[str, str]]:
        with self.read() as conn:
            return [(r.actor, r.role) for r in conn.execute(select(t.roles.c.actor, t.roles.c.role)
                                                            .order_by(t.roles.c.actor, t.roles.c.role))]

    def bootstrap_admin(self, actor: str, by: str) -> bool:
        """Grant admin to ``actor`` only if no admin exists, checked in the same transaction."""
        with self.write() as conn:
            if conn.execute(select(t.roles.c.actor).where(t.roles.c.role == "admin")).first() is not None:
                return False
            conn.execute(insert(t.roles).values(actor=actor, role="admin", granted_at=now(), granted_by=by))
            audit(conn, by, "bootstrap_admin", after={"actor": actor, "role": "admin"})
        return True

    def audit_entries(self, *, model: str | None = None, limit: int = 200) -> list[AuditRecord]:
        q = select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        if model:
            q = q.where(t.audit_log.c.model == model)
        with self.read() as conn:
            return [AuditRecord(r.id, r.at, r.actor, r.action, r.model, r.version, r.alias, r.before, r.after,
                                r.detail) for r in conn.execute(q)]

    def state_version(self, key: str = "serving") -> int:
        with self.read() as conn:
            return conn.execute(select(t.state_versions.c.version).where(t.state_versions.c.key == key)).scalar() or 0
