"""The dashboard's reads of runs: filtered pages, one run in full, its graph, curves and comparisons.

Pages are keyset-paginated on ``(created_at, id)`` descending, which ``ix_runs_created`` serves in
order: the first page of 10,000 runs reads 50 index entries, not 10,000 rows. ``offset`` is there
for jumping to a page number; it costs a walk over the skipped entries.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, and_, cast, func, or_, select

from conveyor.errors import InvalidRequest
from conveyor.store.metadata import tables as t

MAX_PAGE = 500
MAX_COMPARE = 200
MAX_POINTS = 20_000          # per run and metric; longer curves are thinned evenly


def iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def parse_time(text: str, name: str) -> float:
    """Epoch seconds from epoch seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be epoch seconds or an ISO 8601 time such as 2026-01-31T12:00, "
                             f"not {text!r}.", field=name) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _pairs(values: list[str], name: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"'{name}' takes KEY=VALUE, e.g. {name}=lr=0.1; got {v!r}.", field=name)
        out.append((key, val))
    return out


def encode_cursor(created_at: float, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{run_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, rid = raw.partition("|")
        return float(at), rid
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("'cursor' is not one this dashboard gave out; take next_cursor from the previous "
                             "page.", field="cursor") from None


def run_row(r: Any) -> dict[str, Any]:
    took = None if r.ended_at is None or r.started_at is None else round(r.ended_at - r.started_at, 6)
    return {"id": r.id, "name": r.name, "kind": r.kind, "pipeline": r.pipeline_name or r.name, "status": r.status,
            "parameters": r.parameters or {}, "tags": r.tags or {}, "created": iso(r.created_at),
            "started": iso(r.started_at), "ended": iso(r.ended_at), "duration_s": took, "error": r.error}


def list_runs(metadata: Any, query: Mapping[str, Any]) -> dict[str, Any]:
    """One page of runs, newest first, filtered as ``query`` says (see docs/dashboard.md)."""
    r = t.runs
    limit = _int(query.get("limit", "50"), "limit", 1, MAX_PAGE)
    conds: list[Any] = []
    if query.get("pipeline"):
        conds.append(or_(r.c.pipeline_name == query["pipeline"],
                         and_(r.c.pipeline_name.is_(None), r.c.name == query["pipeline"])))
    if query.get("status"):
        conds.append(r.c.status.in_(str(query["status"]).split(",")))
    if query.get("kind"):
        conds.append(r.c.kind == query["kind"])
    for key, val in _pairs(list(query.get("tag", [])), "tag"):
        conds.append(cast(r.c.tags[key].as_string(), String) == val)
    for key, val in _pairs(list(query.get("param", [])), "param"):
        conds.append(cast(r.c.parameters[key].as_string(), String) == val)
    if query.get("since"):
        conds.append(r.c.created_at >= parse_time(query["since"], "since"))
    if query.get("until"):
        conds.append(r.c.created_at < parse_time(query["until"], "until"))
    q = select(r).where(*conds).order_by(r.c.created_at.desc(), r.c.id.desc()).limit(limit + 1)
    if query.get("cursor"):
        at, rid = decode_cursor(query["cursor"])
        q = q.where(or_(r.c.created_at < at, and_(r.c.created_at == at, r.c.id < rid)))
    elif query.get("offset"):
        q = q.offset(_int(query["offset"], "offset", 0, 10**9))
    with metadata.runs.read() as conn:
        rows = conn.execute(q).all()
        total = conn.execute(select(func.count()).select_from(r).where(*conds)).scalar() \
            if query.get("total", "1") != "0" else None
    more = len(rows) > limit
    rows = rows[:limit]
    latest = latest_metrics(metadata, [x.id for x in rows])
    return {"runs": [{**run_row(x), "metrics": latest.get(x.id, {})} for x in rows], "total": total,
            "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None}


def latest_metrics(metadata: Any, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Each run's last value of every metric, for a page of runs, in one query on ``ix_metrics_run``."""
    out: dict[str, dict[str, float]] = {}
    if not run_ids:
        return out
    m = t.metrics
    last = select(func.max(m.c.id)).where(m.c.run_id.in_(run_ids)).group_by(m.c.run_id, m.c.key)
    with metadata.runs.read() as conn:    # the database picks each curve's last point: 100 runs x 1,000 steps
        for rid, key, value in conn.execute(select(m.c.run_id, m.c.key, m.c.value)    # send 100 rows, not 100,000
                                            .where(m.c.id.in_(last)).order_by(m.c.key)):
            out.setdefault(rid, {})[key] = value
    return out


def _int(text: Any, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{name}' must be a whole number, not {text!r}.", field=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, not {value}.", field=name)
    return value


def pipelines(metadata: Any) -> list[str]:
    """Every pipeline (or tracking run) name, for the filter list."""
    with metadata.runs.read() as conn:
        rows = conn.execute(select(func.coalesce(t.runs.c.pipeline_name, t.runs.c.name)).distinct())
        return sorted(x[0] for x in rows if x[0])


def step_row(s: Any, reasons: Mapping[str, str]) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "step": s.step, "status": s.status, "attempts": s.attempts,
            "cache_hit": s.cache_hit, "cached_from": s.cached_from, "started": iso(s.started_at),
            "ended": iso(s.ended_at), "started_at": s.started_at, "ended_at": s.ended_at,
            "duration_s": None if s.duration is None else round(s.duration, 6), "error": s.error,
            "traceback": s.traceback, "reason": s.reason, "cache_miss": reasons.get(s.name),
            "map_index": s.map_index}


def graph_edges(metadata: Any, run_id: str) -> list[dict[str, str]]:
    """Edges between the run's step runs: an output of one read as an input of another."""
    lin = t.lineage
    out_l, in_l = lin.alias("o"), lin.alias("i")
    so, si = t.step_runs.alias("so"), t.step_runs.alias("si")
    q = (select(so.c.name.label("src"), si.c.name.label("dst"), in_l.c.name.label("input"))
         .select_from(in_l.join(out_l, and_(out_l.c.artifact_id == in_l.c.artifact_id, out_l.c.run_id == run_id,
                                            out_l.c.direction == "output"))
                      .join(so, so.c.id == out_l.c.step_run_id).join(si, si.c.id == in_l.c.step_run_id))
         .where(in_l.c.run_id == run_id, in_l.c.direction == "input").distinct())
    with metadata.runs.read() as conn:
        return [{"from": x.src, "to": x.dst, "input": x.input} for x in conn.execute(q)]


def cache_misses(metadata: Any, run_id: str) -> dict[str, str]:
    """Why each step that ran missed the cache, by node name (two queries a step: the run page asks
    for it after drawing the graph, so a 500-step run is not held up by it)."""
    from conveyor.runtime.cache import miss_reasons

    rec = metadata.runs.get(run_id)
    try:
        return miss_reasons(metadata, rec.id)
    except Exception:    # an explanation is a courtesy; a run recorded oddly still shows
        return {}


def run_detail(client: Any, run_id: str, explain: bool = True) -> dict[str, Any]:
    """One run in full: record, steps with states and (``explain``) cache reasons, graph, timeline,
    params, metrics, artifacts and environment."""
    md = client.metadata
    rec = md.runs.get(run_id)
    steps = md.steps.for_run(rec.id)
    reasons = cache_misses(md, rec.id) if explain else {}
    with md.runs.read() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.id == rec.id)).first()
    data = run_row(row)
    data.update({
        "pipeline_ref": rec.pipeline_ref, "git": {"commit": rec.git_commit, "dirty": rec.git_dirty},
        "options": rec.options, "started_at": rec.started_at, "ended_at": rec.ended_at,
        "steps": [step_row(s, reasons) for s in steps],
        "edges": graph_edges(md, rec.id),
        "events": [{"at": iso(at), "kind": k, "detail": d} for at, k, d in md.runs.events(rec.id)],
        "params": md.tracking.params(rec.id),
        "metrics": md.tracking.latest_metrics(rec.id),
        "artifacts": [{"step": s, "name": n, "id": a.id, "type": a.type_name, "size": a.size,
                       "content_hash": a.content_hash, "uri": a.uri}
                      for s, n, a in md.artifacts.for_run(rec.id)],
        "environment": md.runs.environment(rec.environment_hash) if rec.environment_hash else {},
        "datasets": [{"dataset": u.dataset, "version": u.version, "role": u.role, "at": iso(u.at)}
                     for u in md.datasets.read_by_run(rec.id)],
    })
    _add_plan(data, md.runs.plan(rec.id))
    return data


def _add_plan(data: dict[str, Any], plan: str | None) -> None:
    """Steps of the run's plan that have not started yet (``pending``), and the plan's edges the
    lineage cannot show yet (no artifact has passed along them)."""
    import orjson

    if not plan:
        return
    try:
        spec = orjson.loads(plan)
    except orjson.JSONDecodeError:
        return
    seen = {s["name"] for s in data["steps"]}
    for name in spec.get("steps", []):
        if name not in seen:
            data["steps"].append({"id": None, "name": name, "step": name, "status": "pending", "cache_hit": False,
                                  "cached_from": None,
                                  "attempts": 0, "started": None, "ended": None, "started_at": None,
                                  "ended_at": None, "duration_s": None, "error": None, "traceback": None,
                                  "reason": None, "cache_miss": None, "map_index": None})
    known = {(e["from"], e["to"]) for e in data["edges"]}
    data["edges"].extend({"from": a, "to": b, "input": None} for a, b in spec.get("edges", []) if (a, b) not in known)


def run_states(metadata: Any, run_id: str) -> dict[str, Any]:
    """The small answer the run page polls while a run is live: its status and each step's."""
    rec = metadata.runs.get(run_id)
    with metadata.runs.read() as conn:
        rows = conn.execute(select(t.step_runs.c.name, t.step_runs.c.status, t.step_runs.c.started_at,
                                   t.step_runs.c.ended_at, t.step_runs.c.cache_hit)
                            .where(t.step_runs.c.run_id == rec.id).order_by(t.step_runs.c.started_at)).all()
    return {"id": rec.id, "status": rec.status, "ended": iso(rec.ended_at),
            "steps": [{"name": x.name, "status": x.status, "started_at": x.started_at, "ended_at": x.ended_at,
                       "cache_hit": bool(x.cache_hit)} for x in rows]}


def thin(x: list[float], y: list[float], points: int) -> tuple[list[float], list[float]]:
    """At most about ``points`` points of a curve that keep its shape: the lowest and the highest value
    of each of ``points / 2`` equal runs of steps (the first and last point always), in step order."""
    n = len(x)
    if n <= points:
        return x, y
    import numpy as np

    values = np.asarray(y, dtype=np.float64)
    bucket = np.arange(n) * max(1, points // 2) // n
    order = np.lexsort((values, bucket))                 # by bucket, then by value within it
    ends = np.flatnonzero(np.diff(bucket[order])) + 1
    keep = np.unique(np.concatenate([order[np.r_[0, ends]], order[np.r_[ends - 1, n - 1]], [0, n - 1]]))
    return [x[i] for i in keep], [y[i] for i in keep]


def curves(metadata: Any, run_ids: list[str], keys: list[str] | None = None,
           points: int | None = None) -> dict[str, Any]:
    """Metric curves: ``{run_id: {key: {"x": [...], "y": [...]}}}`` from one query over the runs;
    ``points``: at most about that many points a curve, its shape kept (``thin``)."""
    if not run_ids:
        return {}
    if len(run_ids) > MAX_COMPARE:
        raise InvalidRequest(f"At most {MAX_COMPARE} runs at once; got {len(run_ids)}.", field="ids")
    run_ids = [r.id for r in _runs_by_id(metadata, run_ids)]
    m = t.metrics
    q = select(m.c.run_id, m.c.key, m.c.value, m.c.step).where(m.c.run_id.in_(run_ids))
    if keys:
        q = q.where(m.c.key.in_(keys))
    out: dict[str, dict[str, dict[str, list[float]]]] = {rid: {} for rid in run_ids}
    # (run_id, id) is the order of ix_metrics_run's entries, so SQLite reads the index in order and sorts nothing
    with metadata.runs.read() as conn:
        rows = conn.execute(q.order_by(m.c.run_id, m.c.id)).all()
    last: tuple[str, str] | None = None
    c: dict[str, list[Any]] = {}
    for rid, key, value, step in rows:
        if (rid, key) != last:
            c = out[rid].setdefault(key, {"x": [], "y": []})
            last = (rid, key)
        c["x"].append(len(c["x"]) if step is None else step)
        c["y"].append(value)
    for per_run in out.values():
        for c in per_run.values():
            if points is not None:
                c["x"], c["y"] = thin(c["x"], c["y"], points)
            elif len(c["x"]) > MAX_POINTS:
                stride = -(-len(c["x"]) // MAX_POINTS)
                c["x"], c["y"] = c["x"][::stride], c["y"][::stride]
    return out


def compare(client: Any, run_ids: list[str]) -> dict[str, Any]:
    """Parameters and last metric values of several runs, with the keys whose values differ."""
    if len(run_ids) > MAX_COMPARE:
        raise InvalidRequest(f"At most {MAX_COMPARE} runs at once; got {len(run_ids)}.", field="ids")
    md = client.metadata
    runs = _runs_by_id(md, run_ids)
    ids = [r.id for r in runs]
    params: dict[str, dict[str, Any]] = {r.id: dict(r.parameters or {}) for r in runs}
    metrics: dict[str, dict[str, float]] = {r.id: {} for r in runs}
    with md.runs.read() as conn:
        for rid, key, value in conn.execute(select(t.params.c.run_id, t.params.c.key, t.params.c.value)
                                            .where(t.params.c.run_id.in_(ids)).order_by(t.params.c.id)):
            params[rid].setdefault(key, value)
    for rid, per_run in latest_metrics(md, ids).items():
        metrics[rid].update(per_run)
    pkeys = sorted({k for p in params.values() for k in p})
    mkeys = sorted({k for m in metrics.values() for k in m})
    return {
        "runs": [{"id": r.id, "pipeline": r.pipeline_name or r.name, "status": r.status, "created": iso(r.created_at),
                  "parameters": params[r.id], "metrics": metrics[r.id]} for r in runs],
        "param_keys": pkeys, "metric_keys": mkeys,
        "differing_params": [k for k in pkeys if len({repr(params[i].get(k)) for i in ids}) > 1],
        "differing_metrics": [k for k in mkeys if len({metrics[i].get(k) for i in ids}) > 1],
    }


def _runs_by_id(md: Any, run_ids: list[str]) -> list[Any]:
    """The runs named (their rows), in that order, read in one query; an id the store lacks goes
    through ``get``, which accepts a unique prefix and names what is missing."""
    with md.runs.read() as conn:
        found = {r.id: r for r in conn.execute(select(t.runs).where(t.runs.c.id.in_(list(run_ids))))}
    return [found[i] if i in found else md.runs.get(i) for i in run_ids]


def logs(metadata: Any, run_id: str, step: str | None) -> list[dict[str, Any]]:
    rec = metadata.runs.get(run_id)
    return [{"step": n, "attempts": a, "text": text} for n, a, text in metadata.steps.logs(rec.id, step)]
