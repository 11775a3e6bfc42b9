"""Monitors and their checks, alerts and webhooks, schedules, triggers, firings, seen objects.

All the agent's state lives here, so an agent that restarts (or a second one on another machine)
carries on where the last left off: due times are stored, each firing is a row, each object an
event source handled is a row written in the same transaction as the firing it caused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.errors import Conflict, NotFound
from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, new_id, now


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    name: str
    endpoint: str
    every_s: float
    config: dict[str, Any]
    enabled: bool
    next_at: float
    created_at: float


@dataclass(frozen=True, slots=True)
class CheckRecord:
    id: int
    monitor: str
    at: float
    status: str
    rows: int | None
    drift_share: float | None
    metric: float | None
    p99_ms: float | None
    findings: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: str
    source: str
    key: str
    at: float
    message: str
    details: dict[str, Any]
    suppressed: bool
    delivery: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    name: str
    target: str
    params: dict[str, Any]
    cron: str
    enabled: bool
    next_at: float
    created_at: float


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    name: str
    on_kind: str
    on_value: str
    target: str
    params: dict[str, Any]
    max_concurrent: int
    enabled: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class FiringRecord:
    id: str
    source_kind: str
    source: str
    at: float
    cause: dict[str, Any]
    status: str
    run_id: str | None
    finished_at: float | None
    error: str | None


def _row(cls: type, row: Any) -> Any:
    data = dict(row._mapping)
    for k in ("config", "params", "details", "cause"):
        if k in data and data[k] is None:
            data[k] = {}
    if "findings" in data and data["findings"] is None:
        data["findings"] = []
    return cls(**data)


class Automation(Repository):
    """The agent's tables."""

    # --- monitors ---------------------------------------------------------------------------

    def create_monitor(self, name: str, endpoint: str, every_s: float, config: dict[str, Any]) -> MonitorRecord:
        ts = now()
        try:
            with self.write() as conn:
                conn.execute(insert(t.monitors).values(name=name, endpoint=endpoint, every_s=every_s, config=config,
                                                       enabled=True, next_at=ts, created_at=ts))
        except IntegrityError:
            raise Conflict(f"Monitor '{name}' already exists; delete it first (`conveyor monitors delete {name}`).") \
                from None
        return self.monitor(name)

    def monitor(self, name: str) -> MonitorRecord:
        with self.read() as conn:
            row = conn.execute(select(t.monitors).where(t.monitors.c.name == name)).first()
        if row is None:
            raise NotFound(f"No monitor '{name}'. See `conveyor monitors list`.")
        return _row(MonitorRecord, row)

    def monitors(self) -> list[MonitorRecord]:
        with self.read() as conn:
            return [_row(MonitorRecord, r) for r in conn.execute(select(t.monitors).order_by(t.monitors.c.name))]

    def delete_monitor(self, name: str) -> None:
        with self.write() as conn:
            if conn.execute(delete(t.monitors).where(t.monitors.c.name == name)).rowcount == 0:
                raise NotFound(f"No monitor '{name}'.")

    def claim_due_monitors(self, at: float) -> list[MonitorRecord]:
        """Monitors due at ``at``; their next due time moves on in the same transaction."""
        with self.write() as conn:
            rows = conn.execute(select(t.monitors).where(t.monitors.c.enabled.is_(True),
                                                          t.monitors.c.next_at <= at)).all()
            for r in rows:
                conn.execute(update(t.monitors).where(t.monitors.c.name == r.name)
                             .values(next_at=at + r.every_s))
        return [_row(MonitorRecord, r) for r in rows]

    def add_check(self, monitor: str, status: str, *, rows: int | None = None, drift_share: float | None = None,
                  metric: float | None = None, p99_ms: float | None = None,
                  findings: list[dict[str, Any]] | None = None, at: float | None = None) -> int:
        with self.write() as conn:
            res = conn.execute(insert(t.monitor_checks).values(monitor=monitor, at=at or now(), status=status,
                                                               rows=rows, drift_share=drift_share, metric=metric,
                                                               p99_ms=p99_ms, findings=findings or []))
            return int(res.inserted_primary_key[0])

    def checks(self, monitor: str, limit: int = 100) -> list[CheckRecord]:
        with self.read() as conn:
            rows = conn.execute(select(t.monitor_checks).where(t.monitor_checks.c.monitor == monitor)
                                .order_by(t.monitor_checks.c.id.desc()).limit(limit)).all()
        return [_row(CheckRecord, r) for r in reversed(rows)]

    # --- alerts and webhooks ----------------------------------------------------------------

    def raise_alert(self, source: str, key: str, message: str, details: dict[str, Any],
                    cooldown_s: float) -> AlertRecord:
        """Store an alert; one equal to an unsuppressed alert inside the cool-down is stored suppressed."""
        ts = now()
        with self.write() as conn:
            recent = conn.execute(select(func.count()).select_from(t.alerts).where(
                t.alerts.c.key == key, t.alerts.c.suppressed.is_(False), t.alerts.c.at > ts - cooldown_s)).scalar()
            aid = new_id()
            suppressed = bool(recent)
            conn.execute(insert(t.alerts).values(id=aid, source=source, key=key, at=ts, message=message,
                                                 details=details, suppressed=suppressed,
                                                 delivery="none" if suppressed else "pending", attempts=0))
        return self.alert(aid)

    def alert(self, alert_id: str) -> AlertRecord:
        with self.read() as conn:
            row = conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"No alert '{alert_id}'.")
        return _row(AlertRecord, row)

    def alerts(self, source: str | None = None, limit: int = 100) -> list[AlertRecord]:
        q = select(t.alerts).order_by(t.alerts.c.at.desc()).limit(limit)
        if source:
            q = q.where(t.alerts.c.source == source)
        with self.read() as conn:
            return [_row(AlertRecord, r) for r in conn.execute(q)]

    def pending_alerts(self) -> list[AlertRecord]:
        with self.read() as conn:
            rows = conn.execute(select(t.alerts).where(t.alerts.c.delivery == "pending")
                                .order_by(t.alerts.c.at)).all()
        return [_row(AlertRecord, r) for r in rows]

    def mark_delivery(self, alert_id: str, delivery: str, attempts: int, error: str | None = None) -> None:
        with self.write() as conn:
            conn.execute(update(t.alerts).where(t.alerts.c.id == alert_id)
                         .values(delivery=delivery, attempts=attempts, last_error=error))

    def add_webhook(self, name: str, url: str, sources: list[str] | None = None) -> None:
        try:
            with self.write() as conn:
                conn.execute(insert(t.webhooks).values(name=name, url=url, sources=sources, created_at=now()))
        except IntegrityError:
            raise Conflict(f"Webhook '{name}' already exists.") from None

    def webhooks(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t.webhooks).order_by(t.webhooks.c.name))]

    def delete_webhook(self, name: str) -> None:
        with self.write() as conn:
            if conn.execute(delete(t.webhooks).where(t.webhooks.c.name == name)).rowcount == 0:
                raise NotFound(f"No webhook '{name}'.")

    # --- schedules ----------------------------------------------------------------------------

    def create_schedule(self, name: str, target: str, cron: str, params: dict[str, Any], next_at: float) -> None:
        try:
            with self.write() as conn:
                conn.execute(insert(t.schedules).values(name=name, target=target, cron=cron, params=params,
                                                        enabled=True, next_at=next_at, created_at=now()))
        except IntegrityError:
            raise Conflict(f"Schedule '{name}' already exists.") from None

    def schedules(self) -> list[ScheduleRecord]:
        with self.read() as conn:
            return [_row(ScheduleRecord, r) for r in conn.execute(select(t.schedules).order_by(t.schedules.c.name))]

    def delete_schedule(self, name: str) -> None:
        with self.write() as conn:
            if conn.execute(delete(t.schedules).where(t.schedules.c.name == name)).rowcount == 0:
                raise NotFound(f"No schedule '{name}'.")

    def claim_due_schedule(self, name: str, due_at: float, next_at: float, cause: dict[str, Any]) -> str | None:
        """Move a due schedule on and record its firing atomically; None if someone else took it."""
        with self.write() as conn:
            moved = conn.execute(update(t.schedules).where(t.schedules.c.name == name,
                                                           t.schedules.c.next_at == due_at)
                                 .values(next_at=next_at)).rowcount
            if not moved:
                return None
            fid = new_id()
            conn.execute(insert(t.firings).values(id=fid, source_kind="schedule", source=name, at=now(),
                                                  cause=cause, status="pending"))
            return fid

    # --- triggers -----------------------------------------------------------------------------

    def create_trigger(self, name: str, on_kind: str, on_value: str, target: str, params: dict[str, Any],
                       max_concurrent: int) -> None:
        try:
            with self.write() as conn:
                conn.execute(insert(t.triggers).values(name=name, on_kind=on_kind, on_value=on_value, target=target,
                                                       params=params, max_concurrent=max_concurrent, enabled=True,
                                                       created_at=now()))
        except IntegrityError:
            raise Conflict(f"Trigger '{name}' already exists.") from None

    def triggers(self, on_kind: str | None = None, on_value: str | None = None) -> list[TriggerRecord]:
        q = select(t.triggers).order_by(t.triggers.c.name)
        if on_kind:
            q = q.where(t.triggers.c.on_kind == on_kind)
        if on_value:
            q = q.where(t.triggers.c.on_value == on_value)
        with self.read() as conn:
            return [_row(TriggerRecord, r) for r in conn.execute(q)]

    def delete_trigger(self, name: str) -> None:
        with self.write() as conn:
            if conn.execute(delete(t.triggers).where(t.triggers.c.name == name)).rowcount == 0:
                raise NotFound(f"No trigger '{name}'.")

    def seen(self, trigger: str) -> set[str]:
        with self.read() as conn:
            return {r.path for r in conn.execute(select(t.seen_objects.c.path)
                                                 .where(t.seen_objects.c.trigger == trigger))}

    def fire_for_object(self, trigger: str, path: str, cause: dict[str, Any]) -> str | None:
        """Mark ``path`` seen and record a pending firing in one transaction; None if it was seen already."""
        try:
            with self.write() as conn:
                conn.execute(insert(t.seen_objects).values(trigger=trigger, path=path, at=now()))
                fid = new_id()
                conn.execute(insert(t.firings).values(id=fid, source_kind="trigger", source=trigger, at=now(),
                                                      cause=cause, status="pending"))
                return fid
        except IntegrityError:
            return None

    def fire(self, source_kind: str, source: str, cause: dict[str, Any], status: str = "pending") -> str:
        fid = new_id()
        with self.write() as conn:
            conn.execute(insert(t.firings).values(id=fid, source_kind=source_kind, source=source, at=now(),
                                                  cause=cause, status=status,
                                                  finished_at=now() if status == "skipped" else None))
        return fid

    # --- firings ------------------------------------------------------------------------------

    def firings(self, source: str | None = None, status: str | None = None, limit: int = 200) -> list[FiringRecord]:
        q = select(t.firings).order_by(t.firings.c.at.desc(), t.firings.c.id).limit(limit)
        if source:
            q = q.where(t.firings.c.source == source)
        if status:
            q = q.where(t.firings.c.status == status)
        with self.read() as conn:
            return [_row(FiringRecord, r) for r in conn.execute(q)]

    def count_active(self, source: str, statuses: tuple[str, ...] = ("pending", "running")) -> int:
        """Firings of ``source`` in ``statuses`` (default: not finished yet)."""
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.firings).where(
                t.firings.c.source == source, t.firings.c.status.in_(statuses))).scalar())

    def set_firing(self, firing_id: str, status: str, *, run_id: str | None = None, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status}
        if run_id is not None:
            values["run_id"] = run_id
        if error is not None:
            values["error"] = error
        if status in ("succeeded", "failed", "skipped"):
            values["finished_at"] = now()
        with self.write() as conn:
            conn.execute(update(t.firings).where(t.firings.c.id == firing_id).values(**values))
