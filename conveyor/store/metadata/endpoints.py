"""Serving records: endpoints (routes, shadows) and API keys (stored hashed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from conveyor.errors import Conflict, NotFound
from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, now
from conveyor.store.metadata.models import audit, bump_state


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """A named serving route: ``spec`` holds routes, shadows and the sticky header."""

    name: str
    spec: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key (the secret itself is never stored)."""

    key_id: str
    secret_hash: str
    scope: str
    endpoint: str | None
    rate_limit: float | None
    description: str | None
    created_at: float
    revoked_at: float | None
    actor: str | None = None        # who a governance call made with this key acts as


def _endpoint(row: Any) -> EndpointRecord:
    return EndpointRecord(row.name, row.spec, row.created_at, row.updated_at)


def _key(row: Any) -> KeyRecord:
    return KeyRecord(row.key_id, row.secret_hash, row.scope, row.endpoint, row.rate_limit, row.description,
                     row.created_at, row.revoked_at, row.actor)


class Endpoints(Repository):
    """Endpoints and keys; every change bumps the state counter servers poll."""

    def create(self, name: str, spec: dict[str, Any], actor: str) -> EndpointRecord:
        with self.write() as conn:
            if conn.execute(select(t.endpoints.c.name).where(t.endpoints.c.name == name)).first():
                raise Conflict(f"Endpoint '{name}' already exists. Change it with `conveyor endpoints update {name}`.")
            ts = now()
            conn.execute(insert(t.endpoints).values(name=name, spec=spec, created_at=ts, updated_at=ts, updated_by=actor))
            audit(conn, actor, "endpoint_create", detail=name, after=spec)
            bump_state(conn)
        return self.get(name)

    def update(self, name: str, spec: dict[str, Any], actor: str) -> EndpointRecord:
        with self.write() as conn:
            before = conn.execute(select(t.endpoints.c.spec).where(t.endpoints.c.name == name)).scalar()
            if before is None:
                raise NotFound(f"No endpoint '{name}'. Create it with `conveyor endpoints create {name} --model ...`.")
            conn.execute(update(t.endpoints).where(t.endpoints.c.name == name)
                         .values(spec=spec, updated_at=now(), updated_by=actor))
            audit(conn, actor, "endpoint_update", detail=name, before=before, after=spec)
            bump_state(conn)
        return self.get(name)

    def delete(self, name: str, actor: str) -> None:
        with self.write() as conn:
            before = conn.execute(select(t.endpoints.c.spec).where(t.endpoints.c.name == name)).scalar()
            if before is None:
                raise NotFound(f"No endpoint '{name}'.")
            conn.execute(t.endpoints.delete().where(t.endpoints.c.name == name))
            audit(conn, actor, "endpoint_delete", detail=name, before=before)
            bump_state(conn)

    def get(self, name: str) -> EndpointRecord:
        with self.read() as conn:
            row = conn.execute(select(t.endpoints).where(t.endpoints.c.name == name)).first()
        if row is None:
            raise NotFound(f"No endpoint '{name}'. List them with `conveyor endpoints list`.")
        return _endpoint(row)

    def list(self) -> list[EndpointRecord]:
        with self.read() as conn:
            return [_endpoint(r) for r in conn.execute(select(t.endpoints).order_by(t.endpoints.c.name))]

    # --- keys ---------------------------------------------------------------------------------

    def add_key(self, key_id: str, secret_hash: str, scope: str, endpoint: str | None, rate_limit: float | None,
                description: str | None, actor: str, *, acts_as: str | None = None) -> None:
        """Store a key; ``acts_as`` is the actor the key's governance calls act as."""
        with self.write() as conn:
            conn.execute(insert(t.api_keys).values(key_id=key_id, secret_hash=secret_hash, scope=scope,
                                                   endpoint=endpoint, rate_limit=rate_limit, description=description,
                                                   created_at=now(), created_by=actor, actor=acts_as))
            audit(conn, actor, "key_create", detail=key_id, after={"scope": scope, "endpoint": endpoint,
                                                                   "rate_limit": rate_limit, "actor": acts_as})
            bump_state(conn)

    def revoke_key(self, key_id: str, actor: str) -> None:
        with self.write() as conn:
            done = conn.execute(update(t.api_keys).where(t.api_keys.c.key_id == key_id,
                                                         t.api_keys.c.revoked_at.is_(None))
                                .values(revoked_at=now())).rowcount
            if not done:
                raise NotFound(f"No active key '{key_id}'. List keys with `conveyor keys list`.")
            audit(conn, actor, "key_revoke", detail=key_id)
            bump_state(conn)

    def keys(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        q = select(t.api_keys).order_by(t.api_keys.c.created_at)
        if not include_revoked:
            q = q.where(t.api_keys.c.revoked_at.is_(None))
        with self.read() as conn:
            return [_key(r) for r in conn.execute(q)]

    def key(self, key_id: str) -> KeyRecord | None:
        with self.read() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        return _key(row) if row else None
