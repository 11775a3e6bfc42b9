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
    fresh: bool = False


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
    fresh: bool = False


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
    attempts: int = 0
    launcher_pid: int | None = None
    launcher_host: str | None = None
    heartbeat_at: float | None = None


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

    def delete_monitor(self, name: str, *, cascade: bool = False) -> list[str]:
        """Delete a monitor; refused while a trigger fires on it, unless ``cascade`` deletes those too.

        Returns the names of the triggers deleted with it.
        """
        where = (t.triggers.c.on_kind == "monitor", t.triggers.c.on_value == name)
        with self.write() as conn:
            if conn.execute(select(t.monitors.c.name).where(t.monitors.c.name == name)).first() is None:
                raise NotFound(f"No monitor '{name}'. See `conveyor monitors list`.")
            dependents = [r.name for r in conn.execute(select(t.triggers.c.name).where(*where)
                                                       .order_by(t.triggers.c.name))]
            if dependents and not cascade:
                names = ", ".join(dependents)
                raise Conflict(f"Monitor '{name}' starts trigger(s) {names}; delete them first "
                               f"(`conveyor triggers delete {dependents[0]}`) or pass --cascade to delete them "
                               "with the monitor.")
            conn.execute(delete(t.triggers).where(*where))
            conn.execute(delete(t.monitors).where(t.monitors.c.name == name))
        return dependents

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

    def create_schedule(self, name: str, target: str, cron: str, params: dict[str, Any], next_at: float, *,
                        fresh: bool = False) -> None:
        try:
            with self.write() as conn:
                conn.execute(insert(t.schedules).values(name=name, target=target, cron=cron, params=params,
                                                        enabled=True, next_at=next_at, created_at=now(),
                                                        fresh=fresh))
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
                       max_concurrent: int, *, fresh: bool = False) -> None:
        try:
            with self.write() as conn:
                conn.execute(insert(t.triggers).values(name=name, on_kind=on_kind, on_value=on_value, target=target,
                                                       params=params, max_concurrent=max_concurrent, enabled=True,
                                                       created_at=now(), fresh=fresh))
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

    def firing(self, firing_id: str) -> FiringRecord:
        """One firing by id."""
        with self.read() as conn:
            row = conn.execute(select(t.firings).where(t.firings.c.id == firing_id)).first()
        if row is None:
            raise NotFound(f"No firing '{firing_id}'. See `conveyor firings list`.")
        return _row(FiringRecord, row)

    def pending_firings(self, limit: int = 500) -> list[FiringRecord]:
        """Pending firings, oldest first: a backlog drains in the order it built up."""
        q = (select(t.firings).where(t.firings.c.status == "pending")
             .order_by(t.firings.c.at, t.firings.c.id).limit(limit))
        with self.read() as conn:
            return [_row(FiringRecord, r) for r in conn.execute(q)]

    def running_firings(self) -> list[FiringRecord]:
        """Firings marked running, oldest first (the agent checks their launchers are alive)."""
        with self.read() as conn:
            rows = conn.execute(select(t.firings).where(t.firings.c.status == "running")
                                .order_by(t.firings.c.at)).all()
        return [_row(FiringRecord, r) for r in rows]

    def claim_firing(self, firing_id: str) -> bool:
        """Move a pending firing to running (one more attempt); False if another agent took it first."""
        with self.write() as conn:
            return bool(conn.execute(
                update(t.firings).where(t.firings.c.id == firing_id, t.firings.c.status == "pending")
                .values(status="running", attempts=t.firings.c.attempts + 1, heartbeat_at=now(),
                        launcher_pid=None, launcher_host=None)).rowcount)

    def record_launcher(self, firing_id: str, pid: int, host: str) -> None:
        """Name the process that runs a firing (so a dead one can be told from a slow one)."""
        with self.write() as conn:
            conn.execute(update(t.firings).where(t.firings.c.id == firing_id, t.firings.c.status == "running")
                         .values(launcher_pid=pid, launcher_host=host, heartbeat_at=now()))

    def heartbeat(self, firing_id: str, pid: int) -> bool:
        """The launcher is alive; False once the firing is no longer its own (reset as dead, or finished)."""
        with self.write() as conn:
            return bool(conn.execute(
                update(t.firings).where(t.firings.c.id == firing_id, t.firings.c.status == "running",
                                        t.firings.c.launcher_pid == pid)
                .values(heartbeat_at=now())).rowcount)

    def retry_or_fail(self, firing_id: str, error: str, max_attempts: int, *,
                      launcher_pid: int | None = None) -> str | None:
        """A firing that did not start (or whose launcher died) goes back to pending, with the error
        recorded, until it has had ``max_attempts`` launches; then it fails. Returns the new status,
        or None when the firing was not running (any more) under ``launcher_pid``."""
        with self.write() as conn:
            cond = [t.firings.c.id == firing_id, t.firings.c.status == "running"]
            if launcher_pid is not None:
                cond.append(t.firings.c.launcher_pid == launcher_pid)
            row = conn.execute(select(t.firings.c.attempts).where(*cond)).first()
            if row is None:
                return None
            if row.attempts < max_attempts:
                values: dict[str, Any] = {"status": "pending", "error": f"attempt {row.attempts}: {error}",
                                          "launcher_pid": None, "launcher_host": None}
            else:
                values = {"status": "failed", "finished_at": now(),
                          "error": f"gave up after {row.attempts} attempt(s): {error}. Fix the cause, then "
                                   f"`conveyor firings retry {firing_id}`."}
            conn.execute(update(t.firings).where(*cond).values(**values))
            return str(values["status"])

    def retry_firing(self, firing_id: str) -> None:
        """Queue a failed firing again with a fresh attempt count (its event stays handled by it)."""
        with self.write() as conn:
            changed = conn.execute(update(t.firings).where(t.firings.c.id == firing_id,
                                                           t.firings.c.status == "failed")
                                   .values(status="pending", attempts=0, finished_at=None,
                                           launcher_pid=None, launcher_host=None)).rowcount
        if not changed:
            status = self.firing(firing_id).status
            raise Conflict(f"Firing {firing_id} is {status}; only a failed firing can be retried.")
