"""Pipelines, runs, their events and environments."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, func, insert, select, update

from conveyor.errors import Conflict, NotFound
from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, new_id, now
from conveyor.store.metadata.records import RunRecord
from conveyor.store.metadata.steps import insert_rows, query_plain, row_plain, update_row

TERMINAL = ("succeeded", "failed", "cancelled")
PLAN = "plan"   # the run_events kind of a run's planned graph (not part of its history)

# Made once and given their values as parameters: each run writes these, and building or
# compiling a statement per call costs more than running it.
_INSERT_RUN = insert(t.runs)
_INSERT_EVENT = insert(t.run_events)
_UPDATE_RUN = update(t.runs).where(t.runs.c.id == bindparam("_rid"))
_PIPELINE_VERSION = select(t.pipelines.c.id, t.pipelines.c.version).where(
    t.pipelines.c.name == bindparam("name"), t.pipelines.c.code_hash == bindparam("code_hash"))
# the same as plain SQL (steps.query_plain): a new store compiles every expression statement again,
# and a process running one pipeline uses each of these once
_PIPELINE_VERSION_SQL = "SELECT id, version FROM pipelines WHERE name = {name} AND code_hash = {code_hash}"
_LAST_VERSION_SQL = "SELECT max(version) FROM pipelines WHERE name = {name}"
_ENVIRONMENT_SQL = "SELECT hash FROM environments WHERE hash = {hash}"


def _run(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id, name=row.name, kind=row.kind, pipeline_name=row.pipeline_name, pipeline_ref=row.pipeline_ref,
        status=row.status, parameters=row.parameters or {}, tags=row.tags or {}, created_at=row.created_at,
        started_at=row.started_at, ended_at=row.ended_at, error=row.error, git_commit=row.git_commit,
        git_dirty=row.git_dirty, environment_hash=row.environment_hash, options=row.options or {},
        pipeline_id=row.pipeline_id,
    )


def _pipeline_version(conn: Any, name: str, code_hash: str) -> Any:
    """(id, version) of this pipeline code, or None."""
    found = query_plain(conn, _PIPELINE_VERSION_SQL, {"name": name, "code_hash": code_hash})
    if found is None:
        found = conn.execute(_PIPELINE_VERSION, {"name": name, "code_hash": code_hash})
    return found.first()


class Runs(Repository):
    """Reads and writes runs and pipeline versions."""

    def ensure_pipeline(self, name: str, code_hash: str, ref: str | None) -> tuple[str, int]:
        """The id and version number of this pipeline code, registering it when new."""
        with self.read() as conn:   # most runs are of a known version: no write lock for them
            row = _pipeline_version(conn, name, code_hash)
        if row:
            return row[0], row[1]
        with self.write() as conn:
            row = _pipeline_version(conn, name, code_hash)
            if row:
                return row[0], row[1]
            found = query_plain(conn, _LAST_VERSION_SQL, {"name": name})
            if found is None:
                found = conn.execute(select(func.max(t.pipelines.c.version)).where(t.pipelines.c.name == name))
            version = (found.scalar() or 0) + 1
            pid = new_id()
            insert_rows(conn, t.pipelines, [dict(id=pid, name=name, version=version, code_hash=code_hash, ref=ref,
                                                 created_at=now())])
            return pid, version

    def save_environment(self, env: dict[str, Any]) -> str:
        """Store an environment description once; return its hash.

        A process runs many pipelines in one environment: the description last saved here is not
        hashed and written again (environments are never deleted).
        """
        last = getattr(self, "_last_environment", None)
        if last is not None and last[0] is env and last[1] == env:
            return last[2]
        blob = orjson.dumps(env, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(blob).hexdigest()
        if last is None or last[2] != digest:
            with self.write() as conn:
                found = query_plain(conn, _ENVIRONMENT_SQL, {"hash": digest})
                if found is None:
                    found = conn.execute(select(t.environments.c.hash).where(t.environments.c.hash == digest))
                if found.first() is None:
                    insert_rows(conn, t.environments, [dict(hash=digest, data=env)])
        self._last_environment = (env, orjson.loads(blob), digest)
        return digest

    def environment(self, digest: str) -> dict[str, Any]:
        with self.read() as conn:
            row = conn.execute(select(t.environments.c.data).where(t.environments.c.hash == digest)).first()
        return row.data if row else {}

    def create(self, *, kind: str, name: str | None = None, pipeline_id: str | None = None,
               pipeline_name: str | None = None, pipeline_ref: str | None = None,
               parameters: dict[str, Any] | None = None, tags: dict[str, Any] | None = None,
               environment_hash: str | None = None, git_commit: str | None = None, git_dirty: bool | None = None,
               options: dict[str, Any] | None = None, pid: int | None = None, host: str | None = None,
               run_id: str | None = None) -> str:
        """Insert a run in state ``running`` and its ``started`` event (``run_id``: a given id, e.g. a task's)."""
        run_id = run_id or new_id()
        ts = now()
        with self.write() as conn:
            insert_rows(conn, t.runs, [dict(
                id=run_id, name=name, kind=kind, pipeline_id=pipeline_id, pipeline_name=pipeline_name,
                pipeline_ref=pipeline_ref, status="running", parameters=parameters or {}, tags=tags or {},
                environment_hash=environment_hash, git_commit=git_commit, git_dirty=git_dirty,
                options=options or {}, pid=pid, host=host, created_at=ts, started_at=ts)], _INSERT_RUN)
            insert_rows(conn, t.run_events, [dict(run_id=run_id, at=ts, kind="started", detail=None)], _INSERT_EVENT)
        return run_id

    def set_status(self, run_id: str, status: str, *, error: str | None = None, event: str | None = None,
                   detail: str | None = None) -> None:
        """Move a run to ``status`` and record an event (default: the status itself)."""
        ts = now()
        values: dict[str, Any] = {"status": status}
        if status in TERMINAL:
            values["ended_at"] = ts
            values["error"] = error
        else:
            values["ended_at"] = None
        with self.write() as conn:
            if not update_row(conn, t.runs, "id", run_id, values):
                conn.execute(_UPDATE_RUN, {**values, "_rid": run_id})
            insert_rows(conn, t.run_events, [dict(run_id=run_id, at=ts, kind=event or status, detail=detail)],
                        _INSERT_EVENT)

    def set_parameters(self, run_id: str, parameters: dict[str, Any], *, detail: str | None = None) -> None:
        """Replace a run's parameters (a resume with new values) and record a ``parameters`` event."""
        with self.write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(parameters=parameters))
            conn.execute(insert(t.run_events).values(run_id=run_id, at=now(), kind="parameters", detail=detail))

    def add_event(self, run_id: str, kind: str, detail: str | None = None) -> None:
        with self.write() as conn:
            insert_rows(conn, t.run_events, [dict(run_id=run_id, at=now(), kind=kind, detail=detail)], _INSERT_EVENT)

    def claim_for_resume(self, run_id: str, pid: int) -> RunRecord:
        """Mark an unfinished run as resumed by this process; refuse a finished one."""
        run = self.get(run_id)
        if run.status == "succeeded":
            raise Conflict(f"Run {run.id} already succeeded; there is nothing to resume. "
                           f"Start a new run instead (`conveyor run ...`).")
        with self.write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run.id).values(status="running", ended_at=None,
                                                                             error=None, pid=pid))
            if run.status == "running":
                conn.execute(insert(t.run_events).values(run_id=run.id, at=now(), kind="interrupted",
                                                         detail="the process running it stopped without finishing"))
            conn.execute(insert(t.run_events).values(run_id=run.id, at=now(), kind="resumed",
                                                     detail=f"previous status: {run.status}"))
        return run

    def get(self, run_id: str) -> RunRecord:
        """A run by id or unique id prefix."""
        with self.read() as conn:
            plain, row = row_plain(conn, t.runs, "id", run_id)
            if not plain:
                row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).first()
            if row is None and run_id and len(run_id) >= 4:
                rows = conn.execute(select(t.runs).where(t.runs.c.id.like(f"{run_id}%")).limit(2)).all()
                if len(rows) > 1:
                    raise NotFound(f"Run id prefix '{run_id}' matches several runs; give more characters.")
                row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No run '{run_id}'. List runs with `conveyor runs list`.")
        return _run(row)

    def totals(self) -> list[tuple[str, str, int, float]]:
        """(pipeline, status, runs, seconds) over every pipeline run: what the metrics endpoint reports."""
        r = t.runs
        seconds = func.sum(func.coalesce(r.c.ended_at - r.c.started_at, 0.0))
        with self.read() as conn:
            rows = conn.execute(select(func.coalesce(r.c.pipeline_name, r.c.name, ""), r.c.status, func.count(),
                                       seconds).where(r.c.kind == "pipeline").group_by(
                func.coalesce(r.c.pipeline_name, r.c.name, ""), r.c.status))
            return [(p, s, int(n), float(sec or 0.0)) for p, s, n, sec in rows]

    def list(self, *, limit: int = 50, pipeline: str | None = None, status: str | None = None) -> list[RunRecord]:
        q = select(t.runs).order_by(t.runs.c.created_at.desc()).limit(limit)
        if pipeline:
            q = q.where((t.runs.c.pipeline_name == pipeline) | (t.runs.c.name == pipeline))
        if status:
            q = q.where(t.runs.c.status == status)
        with self.read() as conn:
            return [_run(r) for r in conn.execute(q)]

    def events(self, run_id: str) -> list[tuple[float, str, str | None]]:
        """The run's history, oldest first (its plan, a record of another kind, is not part of it)."""
        with self.read() as conn:
            rows = conn.execute(select(t.run_events.c.at, t.run_events.c.kind, t.run_events.c.detail)
                                .where(t.run_events.c.run_id == run_id, t.run_events.c.kind != PLAN)
                                .order_by(t.run_events.c.id))
            return [(r.at, r.kind, r.detail) for r in rows]

    def set_plan(self, run_id: str, plan: str) -> None:
        """Record the graph a run (or a resume of it) is about to walk, as JSON: what is still to come."""
        self.add_event(run_id, PLAN, plan)

    def plan(self, run_id: str) -> str | None:
        """The latest plan recorded for a run, or None (runs from before plans were recorded)."""
        with self.read() as conn:
            return conn.execute(select(t.run_events.c.detail)
                                .where(t.run_events.c.run_id == run_id, t.run_events.c.kind == PLAN)
                                .order_by(t.run_events.c.id.desc()).limit(1)).scalar()

    def delete(self, run_id: str) -> None:
        """Delete a run with its steps, metrics, params, events and lineage (artifact bytes stay)."""
        run = self.get(run_id)
        with self.write() as conn:
            step_ids = select(t.step_runs.c.id).where(t.step_runs.c.run_id == run.id)
            conn.execute(delete(t.lineage).where(t.lineage.c.step_run_id.in_(step_ids)))
            for table in (t.metrics, t.params, t.run_events, t.step_runs):
                conn.execute(delete(table).where(table.c.run_id == run.id))
            conn.execute(update(t.artifacts).where(t.artifacts.c.run_id == run.id).values(run_id=None))
            conn.execute(delete(t.runs).where(t.runs.c.id == run.id))
