"""Step runs: their lifecycle, the cache index, and the lineage they write."""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (Integer, String, Text, and_, bindparam, cast, func, insert, literal_column, null, select,
                        union_all, update)
from sqlalchemy.engine import Connection

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.artifacts import artifact_record
from conveyor.store.metadata.base import Repository, new_id, now
from conveyor.store.metadata.records import ArtifactRecord, NewArtifact, StepOutcome, StepRunRecord


def _step(row: Any) -> StepRunRecord:
    return StepRunRecord(
        id=row.id, run_id=row.run_id, name=row.name, step=row.step, status=row.status, attempts=row.attempts,
        cache_hit=bool(row.cache_hit), cache_key=row.cache_key, started_at=row.started_at, ended_at=row.ended_at,
        map_index=row.map_index, cached_from=row.cached_from, error=row.error, traceback=row.traceback,
        reason=row.reason,
    )


_STEP_COLUMNS = ("id", "run_id", "name", "step", "status", "attempts", "cache_hit", "cache_key", "started_at",
                 "ended_at", "map_index", "cached_from", "error", "traceback", "reason")   # what _step reads


_lookups: dict[str, Any] = {}


def _lookup(kind: str) -> Any:
    """The cache lookup statement, made once (building it costs more than running it): for the keys
    bound as ``keys`` (``kind="keys"``), or for those of the latest other run of the same pipeline as
    the run bound as ``run_id`` (``"last"``). Rows: a step run, the newest one by key, with its outputs."""
    if kind in _lookups:
        return _lookups[kind]
    s, runs, a, lin = t.step_runs, t.runs, t.artifacts, t.lineage
    if kind == "last":
        mine, prev = runs.alias("mine"), s.alias("prev")
        run_id = bindparam("run_id")
        last = (select(runs.c.id).where(
            runs.c.pipeline_name == select(mine.c.pipeline_name).where(mine.c.id == run_id).scalar_subquery(),
            runs.c.id != run_id).order_by(runs.c.created_at.desc()).limit(1).scalar_subquery())
        keys: Any = select(prev.c.cache_key).where(prev.c.run_id == last, prev.c.cache_key.isnot(None))
    else:
        keys = bindparam("keys", expanding=True)
    rank = func.row_number().over(partition_by=s.c.cache_key, order_by=s.c.ended_at.desc()).label("rank")
    # rank the candidates on their keys alone, then read the whole rows of the winners only
    ranked = select(s.c.id, rank).where(s.c.cache_key.in_(keys), s.c.status.in_(("succeeded", "cached"))) \
        .subquery("ranked")
    q = (select(*[s.c[c] for c in _STEP_COLUMNS], lin.c.name.label("out_name"), *[c.label(f"a_{c.name}") for c in a.c])
         .select_from(ranked.join(s, s.c.id == ranked.c.id)
                      .outerjoin(lin, and_(lin.c.step_run_id == s.c.id, lin.c.direction == "output"))
                      .outerjoin(a, a.c.id == lin.c.artifact_id))
         .where(ranked.c.rank == 1))
    _lookups[kind] = q
    return q


_UPDATE_STEP = update(t.step_runs).where(t.step_runs.c.id == bindparam("_sid"))
# made once: every step run writes them (a statement built per call is hashed for the compiled cache each time)
_INSERT_STEP_RUNS, _INSERT_ARTIFACTS, _INSERT_LINEAGE = insert(t.step_runs), insert(t.artifacts), insert(t.lineage)
_INSERT_METRICS, _INSERT_PARAMS = insert(t.metrics), insert(t.params)


def write_finish(conn: Connection, step_run_id: str, run_id: str, outcome: StepOutcome) -> None:
    """The writes of a step run's end, inside the caller's transaction."""
    _write_finished(conn, [(step_run_id, run_id, outcome)])


def _write_finished(conn: Connection, finished: Sequence[tuple[str, str, StepOutcome]]) -> None:
    """The writes of these step runs' ends, inside the caller's transaction: an update each, then
    their artifacts, lineage, metrics and params, one statement a table for all of them (none for a
    table with no rows)."""
    ts = now()
    artifacts: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    for step_run_id, run_id, outcome in finished:
        values: dict[str, Any] = dict(
            status=outcome.status, attempts=outcome.attempts, cache_hit=outcome.cache_hit,
            cached_from=outcome.cached_from, error=outcome.error, traceback=outcome.traceback,
            logs=outcome.logs, reason=outcome.reason, ended_at=outcome.ended_at or ts)
        if outcome.started_at is not None:
            values["started_at"] = outcome.started_at
        if outcome.preemptions is not None:
            values["preemptions"] = outcome.preemptions
        used = inline_attempt(outcome.attempt_rows)
        if used is not None:
            values.update(used)
        _update_step(conn, step_run_id, values)
        if outcome.attempt_rows and used is None:
            _insert_attempts(conn, step_run_id, run_id, outcome.attempt_rows)
        artifacts += [dict(id=a.id, content_hash=a.content_hash, materializer=a.materializer,
                           materializer_version=a.materializer_version, type_name=a.type_name, size=a.size,
                           uri=a.uri, inline=a.inline, meta=a.meta, name=a.name, run_id=run_id,
                           step_run_id=step_run_id, created_at=ts) for a in outcome.new_outputs]
        edges += [dict(artifact_id=a.id, step_run_id=step_run_id, run_id=run_id, direction="output",
                       name=a.name, position=None) for a in outcome.new_outputs]
        edges += [dict(artifact_id=aid, step_run_id=step_run_id, run_id=run_id, direction="output",
                       name=name, position=None) for name, aid in outcome.reused_outputs]
        edges += [dict(artifact_id=aid, step_run_id=step_run_id, run_id=run_id, direction="input",
                       name=name, position=pos) for name, aid, pos in outcome.inputs]
        metrics += [dict(run_id=run_id, step_run_id=step_run_id, key=k, value=v, step=s, at=at)
                    for k, v, s, at in outcome.metrics]
        params += [dict(run_id=run_id, step_run_id=step_run_id, key=k, value=v) for k, v in outcome.params]
    # artifacts before the lineage that refers to them (foreign keys)
    for table, rows in ((t.artifacts, artifacts), (t.lineage, edges), (t.metrics, metrics), (t.params, params)):
        if rows:
            _insert_rows(conn, table, rows)


_plain: dict[tuple[Any, ...], tuple[str, tuple[str, ...], tuple[Any, ...]] | None] = {}
_MARKS = {"qmark": lambda c: "?", "format": lambda c: "%s", "pyformat": lambda c: f"%({c})s",
          "named": lambda c: f":{c}"}


def _plain_statement(conn: Connection, table: Any, columns: tuple[str, ...], where: str | None,
                     ) -> tuple[str, tuple[str, ...], tuple[Any, ...]] | None:
    """An insert (``where`` None) or an update of the row whose column ``where`` is bound as ``_key``,
    as plain SQL for the connection's driver, made once per (driver, table, columns, where): the SQL
    text, the parameter names in order and the columns' own bind processors, so values are stored
    exactly as the expression statement stores them (JSON encoded, booleans as the dialect keeps
    them). None when the expression statement is needed: a parameter style without plain marks, or
    a statement leaving out a column with a Python-side default (on insert) or onupdate."""
    dialect = conn.dialect
    key = (dialect.name, dialect.paramstyle, table.name, columns, where)
    if key in _plain:
        return _plain[key]
    marks = _MARKS.get(dialect.paramstyle)
    defaulted = any(c.name not in columns and (c.default is not None if where is None else c.onupdate is not None)
                    for c in table.c)
    if marks is None or defaulted:
        _plain[key] = None
        return None
    quote = dialect.identifier_preparer.quote
    names = columns + (("_key",) if where is not None else ())
    procs = tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns) \
        + ((None,) if where is not None else ())
    if where is not None:
        sql = (f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)}={marks(c)}' for c in columns)} "
               f"WHERE {quote(where)}={marks('_key')}")
    else:
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES ({', '.join(marks(c) for c in columns)})")
    _plain[key] = (sql, names, procs)
    return _plain[key]


def _run_plain(conn: Connection, plain: tuple[str, tuple[str, ...], tuple[Any, ...]],
               rows: Sequence[dict[str, Any]]) -> None:
    sql, names, procs = plain
    values = [tuple(v if p is None else p(v) for v, p in zip([r[c] for c in names], procs)) for r in rows]
    if conn.dialect.paramstyle in ("qmark", "format"):
        conn.exec_driver_sql(sql, values if len(values) > 1 else values[0])
    else:
        dicts = [dict(zip(names, v)) for v in values]
        conn.exec_driver_sql(sql, dicts if len(dicts) > 1 else dicts[0])


def insert_rows(conn: Connection, table: Any, rows: Sequence[dict[str, Any]], statement: Any = None) -> None:
    """Insert rows that all have the same keys, as plain SQL: every step and run writes these, and
    an expression statement costs about twice as much to run, and is compiled again by every new
    store (a process running one pipeline compiles each once). ``statement``: the expression insert
    to use where plain SQL cannot be (default: one made now)."""
    plain = _plain_statement(conn, table, tuple(rows[0]), None)
    if plain is None:
        conn.execute(insert(table) if statement is None else statement, list(rows))
    else:
        _run_plain(conn, plain, rows)


def update_row(conn: Connection, table: Any, where: str, key: Any, values: dict[str, Any]) -> bool:
    """``UPDATE table SET values WHERE where = key`` as plain SQL (see ``insert_rows``); False, with
    nothing done, where the caller's expression statement is needed."""
    plain = _plain_statement(conn, table, tuple(values), where)
    if plain is None:
        return False
    _run_plain(conn, plain, [{**values, "_key": key}])
    return True


_queries: dict[tuple[str, str], tuple[str, tuple[str, ...]] | None] = {}


def query_plain(conn: Connection, template: str, values: dict[str, Any]) -> Any:
    """Run a query of plain columns (no JSON, no booleans to convert) written with ``{name}`` marks
    for its parameters, as plain SQL for the driver (see ``insert_rows``); None where the driver's
    parameter style has no plain marks (the caller runs its expression statement)."""
    style = conn.dialect.paramstyle
    made = _queries.get((style, template))
    if made is None and (style, template) not in _queries:
        marks = _MARKS.get(style)
        names = tuple(re.findall(r"\{(\w+)\}", template))
        made = None if marks is None else (template.format(**{n: marks(n) for n in names}), names)
        _queries[(style, template)] = made
    if made is None:
        return None
    sql, names = made
    if style in ("qmark", "format"):
        return conn.exec_driver_sql(sql, tuple(values[n] for n in names))
    return conn.exec_driver_sql(sql, {n: values[n] for n in names})


_rows: dict[tuple[Any, ...], tuple[str, tuple[str, ...], tuple[Any, ...]] | None] = {}


def row_plain(conn: Connection, table: Any, where: str, key: Any) -> tuple[bool, Any]:
    """The row of ``table`` whose column ``where`` is ``key``, read as plain SQL (see ``insert_rows``)
    with the columns' own result processors, as (True, an object with the columns as attributes, or
    None when there is no such row); (False, None) where the caller's expression query is needed:
    on drivers other than SQLite's, whose result processors depend on the column types the server
    reports."""
    dialect = conn.dialect
    made_key = (dialect.name, dialect.paramstyle, table.name, where)
    if made_key not in _rows:
        if dialect.name != "sqlite" or dialect.paramstyle not in _MARKS:
            _rows[made_key] = None
        else:
            quote = dialect.identifier_preparer.quote
            names = tuple(c.name for c in table.c)
            procs = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in table.c)
            _rows[made_key] = (f"SELECT {', '.join(quote(n) for n in names)} FROM {quote(table.name)} "
                               f"WHERE {quote(where)} = {_MARKS[dialect.paramstyle](where)}", names, procs)
    made = _rows[made_key]
    if made is None:
        return False, None
    sql, names, procs = made
    params = (key,) if dialect.paramstyle in ("qmark", "format") else {where: key}
    row = conn.exec_driver_sql(sql, params).first()
    if row is None:
        return True, None
    return True, SimpleNamespace(**{n: v if p is None else p(v) for n, v, p in zip(names, row, procs)})


def _insert_rows(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    insert_rows(conn, table, rows, _EXPRESSIONS.get(table.name))


_EXPRESSIONS = {"step_runs": _INSERT_STEP_RUNS, "artifacts": _INSERT_ARTIFACTS, "lineage": _INSERT_LINEAGE,
                "metrics": _INSERT_METRICS, "params": _INSERT_PARAMS}


def _update_step(conn: Connection, step_run_id: str, values: dict[str, Any]) -> None:
    if not update_row(conn, t.step_runs, "id", step_run_id, values):
        # parameters rather than .values(): the statement is compiled once per set of columns, not per call
        conn.execute(_UPDATE_STEP, {**values, "_sid": step_run_id})


_USED = ("executor", "host", "started_at", "ended_at", "wall_s", "cpu_s", "peak_rss_bytes", "bytes_read",
         "bytes_written", "gpu_s", "gpu_peak_bytes")   # step_attempts columns that step_runs has as used_<name>
_USED_AS = tuple((c, f"used_{c}") for c in _USED)


def inline_attempt(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The step run's ``used_*`` values when its attempts are one that completed the first time (most
    step runs: their measures go in the update of the step's end, not in a step_attempts row); else None."""
    if len(rows) != 1:
        return None
    row = rows[0]
    if row.get("attempt") != 1 or row.get("status") != "completed" or row.get("error") is not None \
            or row.get("executor") is None:
        return None
    return {used: row.get(c) for c, used in _USED_AS}


def attempt_sources() -> list[tuple[dict[str, Any], Any, list[Any]]]:
    """Where attempts are, as (step_attempts columns by name, what to select them from, conditions):
    the step_attempts rows joined to their step runs, and the step runs holding their one attempt in
    ``used_*``. A reader selects from both with the step run's columns as it needs them."""
    a, s = t.step_attempts, t.step_runs
    rows = ({c.name: c for c in a.c}, a.join(s, s.c.id == a.c.step_run_id), [])
    inline = ({c.name: s.c[f"used_{c.name}"].label(c.name) if c.name in _USED else None for c in a.c}, s,
              [s.c.used_executor.isnot(None)])
    inline[0].update(step_run_id=s.c.id.label("step_run_id"), run_id=s.c.run_id.label("run_id"),
                     attempt=literal_column("1", Integer).label("attempt"),
                     status=literal_column("'completed'", String).label("status"),
                     error=cast(null(), Text).label("error"))
    return [rows, inline]


_ATTEMPT_COLUMNS = ("step_run_id", "run_id", "attempt", "status", "executor", "host", "started_at", "ended_at",
                    "wall_s", "cpu_s", "peak_rss_bytes", "bytes_read", "bytes_written", "gpu_s", "gpu_peak_bytes",
                    "error")


def _insert_attempts(conn: Connection, step_run_id: str, run_id: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert step_attempts rows (every column given, None where unmeasured) as the other rows are."""
    full = [{c: r.get(c) for c in _ATTEMPT_COLUMNS} | {"step_run_id": step_run_id, "run_id": run_id} for r in rows]
    insert_rows(conn, t.step_attempts, full)


def _write_records(conn: Connection, records: Sequence[tuple[str, str, str, StepOutcome, dict[str, Any]]]) -> None:
    """The writes of ``Steps.record_many``, inside the caller's transaction."""
    ts = now()
    steps, artifacts, edges, params = [], [], [], []
    for run_id, name, step, o, kw in records:
        sid = new_id()
        steps.append(dict(
            id=sid, run_id=run_id, name=name, step=step, map_index=kw.get("map_index"), status=o.status,
            attempts=o.attempts, cache_key=kw.get("cache_key"), cache_hit=o.cache_hit, cached_from=o.cached_from,
            code_hash=kw.get("code_hash"), cache_parts=kw.get("cache_parts"), error=o.error,
            traceback=o.traceback, logs=o.logs, reason=o.reason, started_at=o.started_at or ts,
            ended_at=o.ended_at or ts, preemptions=o.preemptions))
        artifacts += [dict(id=a.id, content_hash=a.content_hash, materializer=a.materializer,
                           materializer_version=a.materializer_version, type_name=a.type_name, size=a.size,
                           uri=a.uri, inline=a.inline, meta=a.meta, name=a.name, run_id=run_id,
                           step_run_id=sid, created_at=ts) for a in o.new_outputs]
        edges += [dict(artifact_id=a.id, step_run_id=sid, run_id=run_id, direction="output", name=a.name,
                       position=None) for a in o.new_outputs]
        edges += [dict(artifact_id=aid, step_run_id=sid, run_id=run_id, direction="output", name=n,
                       position=None) for n, aid in o.reused_outputs]
        edges += [dict(artifact_id=aid, step_run_id=sid, run_id=run_id, direction="input", name=n, position=pos)
                  for n, aid, pos in o.inputs]
        params += [dict(run_id=run_id, step_run_id=sid, key=k, value=v) for k, v in o.params]
        if o.metrics or o.attempt_rows:
            raise ValueError("record_many takes step runs without metrics or attempts; use record")
    conn.execute(_INSERT_STEP_RUNS, steps)
    for table, rows in ((t.artifacts, artifacts), (t.lineage, edges), (t.params, params)):
        if rows:
            conn.execute(insert(table), rows)


def _started_row(sid: str, run_id: str, name: str, step: str, kw: dict[str, Any], ts: float) -> dict[str, Any]:
    return dict(id=sid, run_id=run_id, name=name, step=step, map_index=kw.get("map_index"), status="running",
                attempts=0, cache_key=kw.get("cache_key"), cache_hit=False, code_hash=kw.get("code_hash"),
                cache_parts=kw.get("cache_parts"), started_at=ts)


class Steps(Repository):
    """Reads and writes step runs."""

    def start(self, run_id: str, name: str, step: str, *, cache_key: str | None, code_hash: str | None,
              map_index: int | None = None, cache_parts: dict[str, Any] | None = None, sid: str | None = None) -> str:
        """Insert a step run in state ``running`` (under ``sid`` when given)."""
        sid = sid or new_id()
        with self.write() as conn:
            conn.execute(_INSERT_STEP_RUNS, _started_row(sid, run_id, name, step, dict(
                cache_key=cache_key, code_hash=code_hash, map_index=map_index, cache_parts=cache_parts), now()))
        return sid

    def write_many(self, *, finished: Sequence[tuple[str, str, StepOutcome]] = (),
                   recorded: Sequence[tuple[str, str, str, StepOutcome, dict[str, Any]]] = (),
                   started: Sequence[tuple[str, str, str, str, dict[str, Any]]] = ()) -> None:
        """Several step-run writes in one transaction, in this order: ends of step runs (``finish``:
        step run id, run id, outcome), step runs that never ran (``record_many``), and starts
        (``start``: step run id, run id, name, step, keywords of ``start``)."""
        if not (finished or recorded or started):
            return
        with self.write() as conn:
            if finished:
                _write_finished(conn, finished)
            if recorded:
                _write_records(conn, recorded)
            if started:
                ts = now()
                _insert_rows(conn, t.step_runs, [_started_row(sid, run_id, name, step, kw, ts)
                                                 for sid, run_id, name, step, kw in started])

    def finish(self, step_run_id: str, run_id: str, outcome: StepOutcome) -> None:
        """Record a step run's end with its outputs, inputs, metrics and params, atomically."""
        with self.write() as conn:
            write_finish(conn, step_run_id, run_id, outcome)

    def add_attempts(self, step_run_id: str, run_id: str, rows: Sequence[dict[str, Any]], *, attempts: int,
                     preemptions: int) -> None:
        """Record attempts of a step run still under way (preempted ones, before the call runs again)."""
        with self.write() as conn:
            conn.execute(update(t.step_runs).where(t.step_runs.c.id == step_run_id)
                         .values(attempts=attempts, preemptions=preemptions))
            if rows:
                _insert_attempts(conn, step_run_id, run_id, rows)

    def add_outputs(self, step_run_id: str, run_id: str, artifacts: Sequence[NewArtifact]) -> None:
        """Attach extra outputs (e.g. a model registered from inside the step) to a step run."""
        ts = now()
        with self.write() as conn:
            conn.execute(insert(t.artifacts), [dict(
                id=a.id, content_hash=a.content_hash, materializer=a.materializer,
                materializer_version=a.materializer_version, type_name=a.type_name, size=a.size, uri=a.uri,
                inline=a.inline, meta=a.meta, name=a.name, run_id=run_id, step_run_id=step_run_id,
                created_at=ts) for a in artifacts])
            conn.execute(insert(t.lineage), [dict(artifact_id=a.id, step_run_id=step_run_id, run_id=run_id,
                                                  direction="output", name=a.name, position=None) for a in artifacts])

    def add_inputs(self, step_run_id: str, run_id: str, inputs: Sequence[tuple[str, str]]) -> None:
        """Record artifacts a running step read besides its declared inputs (a tuning's winning model)."""
        if inputs:
            with self.write() as conn:
                conn.execute(insert(t.lineage), [dict(artifact_id=aid, step_run_id=step_run_id, run_id=run_id,
                                                      direction="input", name=name, position=None)
                                                 for name, aid in inputs])

    def record(self, run_id: str, name: str, step: str, outcome: StepOutcome, *, cache_key: str | None = None,
               code_hash: str | None = None, map_index: int | None = None,
               cache_parts: dict[str, Any] | None = None) -> str:
        """Insert a step run that never ran (cached, skipped) with its outcome, in one transaction."""
        sid = new_id()
        ts = now()
        with self.write() as conn:
            conn.execute(insert(t.step_runs), dict(
                id=sid, run_id=run_id, name=name, step=step, map_index=map_index, status="pending", attempts=0,
                cache_key=cache_key, cache_hit=False, code_hash=code_hash, cache_parts=cache_parts, started_at=ts))
            write_finish(conn, sid, run_id, outcome)
        return sid

    def record_many(self, records: Sequence[tuple[str, str, str, StepOutcome, dict[str, Any]]]) -> None:
        """``record`` for many step runs that never ran, in one transaction and a few statements:
        (run id, name, step, outcome, keywords of ``record``). Their outcomes carry no metrics, logged
        outputs or attempts (cached steps); the outcome's ``started_at`` is the step run's start."""
        if records:
            with self.write() as conn:
                _write_records(conn, records)

    def adopt(self, record: StepRunRecord, outcome: StepOutcome, *, code_hash: str | None = None,
              cache_parts: dict[str, Any] | None = None) -> bool:
        """Insert a step run recorded elsewhere (an imported run) under its own id; False if it is here already."""
        with self.read() as conn:
            if conn.execute(select(t.step_runs.c.id).where(t.step_runs.c.id == record.id)).first() is not None:
                return False
        with self.write() as conn:
            conn.execute(insert(t.step_runs).values(
                id=record.id, run_id=record.run_id, name=record.name, step=record.step, map_index=record.map_index,
                status="pending", attempts=0, cache_key=record.cache_key, cache_hit=False, code_hash=code_hash,
                cache_parts=cache_parts, started_at=record.started_at or now()))
        self.finish(record.id, record.run_id, outcome)
        return True

    def existing_artifacts(self, ids: Sequence[str]) -> set[str]:
        """Which of these artifact ids this store holds."""
        if not ids:
            return set()
        with self.read() as conn:
            return {r.id for r in conn.execute(select(t.artifacts.c.id).where(t.artifacts.c.id.in_(list(ids))))}

    def find_cached(self, cache_key: str) -> tuple[StepRunRecord, dict[str, ArtifactRecord]] | None:
        """The newest succeeded step run with this cache key, and its outputs by name."""
        with self.read() as conn:
            row = conn.execute(
                select(t.step_runs).where(t.step_runs.c.cache_key == cache_key,
                                          t.step_runs.c.status.in_(("succeeded", "cached")))
                .order_by(t.step_runs.c.ended_at.desc()).limit(1)).first()
            if row is None:
                return None
            outs = conn.execute(
                select(t.lineage.c.name, t.artifacts).join(t.artifacts, t.artifacts.c.id == t.lineage.c.artifact_id)
                .where(t.lineage.c.step_run_id == row.id, t.lineage.c.direction == "output")).all()
        return _step(row), {o.name: artifact_record(o) for o in outs}

    def find_cached_many(self, keys: Sequence[str] = (), *, keys_of_last_run_before: str | None = None,
                         ) -> dict[str, tuple[StepRunRecord, dict[str, ArtifactRecord]]]:
        """``find_cached`` for many keys in one query: by key, the newest succeeded step run and its outputs.

        ``keys_of_last_run_before`` takes the keys instead from the latest other run of the same
        pipeline as that run id (what a re-run most likely hits). Keys without a hit are left out.
        """
        if keys_of_last_run_before is not None:
            batches: list[tuple[Any, dict[str, Any]]] = [(_lookup("last"), {"run_id": keys_of_last_run_before})]
        else:
            unique = sorted(set(keys))
            batches = [(_lookup("keys"), {"keys": unique[i:i + 500]}) for i in range(0, len(unique), 500)]
        found: dict[str, tuple[StepRunRecord, dict[str, ArtifactRecord]]] = {}
        with self.read() as conn:
            for q, values in batches:
                for row in conn.execute(q, values):
                    hit = found.get(row.cache_key)
                    if hit is None:
                        hit = found[row.cache_key] = (_step(row), {})
                    if row.a_id is not None:
                        hit[1][row.out_name] = ArtifactRecord(
                            id=row.a_id, content_hash=row.a_content_hash, materializer=row.a_materializer,
                            materializer_version=row.a_materializer_version, type_name=row.a_type_name,
                            size=row.a_size, uri=row.a_uri, inline=row.a_inline, meta=row.a_meta or {},
                            name=row.a_name, run_id=row.a_run_id, step_run_id=row.a_step_run_id,
                            created_at=row.a_created_at)
        return found

    def cache_parts(self, step_run_id: str) -> dict[str, Any] | None:
        """The stored components of a step run's cache key (``None`` for runs recorded before they existed)."""
        with self.read() as conn:
            return conn.execute(select(t.step_runs.c.cache_parts).where(t.step_runs.c.id == step_run_id)).scalar()

    def previous_call(self, pipeline: str | None, name: str, *, before: float,
                      exclude: str) -> tuple[dict[str, Any] | None, str] | None:
        """The key components and status of the latest earlier call of node ``name`` in ``pipeline``."""
        q = (select(t.step_runs.c.cache_parts, t.step_runs.c.status)
             .join(t.runs, t.runs.c.id == t.step_runs.c.run_id)
             .where(t.runs.c.pipeline_name == pipeline, t.step_runs.c.name == name, t.step_runs.c.id != exclude,
                    t.step_runs.c.started_at <= before, t.step_runs.c.cache_key.isnot(None))
             .order_by(t.step_runs.c.started_at.desc()).limit(1))
        with self.read() as conn:
            row = conn.execute(q).first()
        return None if row is None else (row.cache_parts, row.status)

    def totals(self) -> list[tuple[str, str, bool, int, float]]:
        """(step, status, cache hit, step runs, seconds) over every step run, for the metrics endpoint."""
        from sqlalchemy import func

        s = t.step_runs
        seconds = func.sum(func.coalesce(s.c.ended_at - s.c.started_at, 0.0))
        with self.read() as conn:
            rows = conn.execute(select(s.c.step, s.c.status, s.c.cache_hit, func.count(), seconds)
                                .group_by(s.c.step, s.c.status, s.c.cache_hit))
            return [(step, status, bool(hit), int(n), float(sec or 0.0)) for step, status, hit, n, sec in rows]

    def for_run(self, run_id: str) -> list[StepRunRecord]:
        with self.read() as conn:
            rows = conn.execute(select(t.step_runs).where(t.step_runs.c.run_id == run_id)
                                .order_by(t.step_runs.c.started_at, t.step_runs.c.name))
            return [_step(r) for r in rows]

    def outputs(self, step_run_ids: Sequence[str]) -> dict[str, dict[str, ArtifactRecord]]:
        """Outputs by step run id, then by output name."""
        result: dict[str, dict[str, ArtifactRecord]] = {sid: {} for sid in step_run_ids}
        if not step_run_ids:
            return result
        with self.read() as conn:
            rows = conn.execute(
                select(t.lineage.c.step_run_id.label("sid"), t.lineage.c.name.label("out_name"), t.artifacts)
                .join(t.artifacts, t.artifacts.c.id == t.lineage.c.artifact_id)
                .where(t.lineage.c.step_run_id.in_(list(step_run_ids)), t.lineage.c.direction == "output"))
            for r in rows:
                result[r.sid][r.out_name] = artifact_record(r)
        return result

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's step_attempts rows with their step run's name, in the order the attempts started
        (found through the run's step runs: step_attempts is keyed by step run and attempt alone)."""
        s = t.step_runs
        both = union_all(*[select(s.c.name, s.c.step, s.c.preemptions,
                                  *[col for name, col in cols.items() if name != "run_id"])
                           .select_from(source).where(s.c.run_id == run_id, *where)
                           for cols, source, where in attempt_sources()]).subquery("attempts")
        q = select(both).order_by(both.c.started_at, both.c.name, both.c.attempt)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def logs(self, run_id: str, name: str | None = None) -> list[tuple[str, int, str]]:
        """(step name, attempts, captured text) for the run's step runs."""
        q = select(t.step_runs.c.name, t.step_runs.c.attempts, t.step_runs.c.logs) \
            .where(t.step_runs.c.run_id == run_id).order_by(t.step_runs.c.started_at)
        if name:
            q = q.where((t.step_runs.c.name == name) | (t.step_runs.c.step == name))
        with self.read() as conn:
            return [(r.name, r.attempts, r.logs or "") for r in conn.execute(q)]

    def mark_unfinished(self, run_id: str, status: str, reason: str) -> None:
        """Close step runs still marked running (after a crash or a cancel)."""
        with self.write() as conn:
            conn.execute(update(t.step_runs).where(t.step_runs.c.run_id == run_id,
                                                   t.step_runs.c.status.in_(("running", "pending")))
                         .values(status=status, reason=reason, ended_at=now()))
