"""The dashboard's reads of everything besides runs: models, endpoints, monitors, automation,
datasets and tuning studies. Each function returns JSON-able data for one API route."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from conveyor.errors import InvalidRequest, NotFound
from conveyor.store.metadata import tables as t
from conveyor.ui.runs import iso


def _version(v: Any, approvals: list[Any] | None = None) -> dict[str, Any]:
    data = {"model": v.model, "version": v.version, "artifact": v.artifact_id, "run": v.run_id,
            "metrics": v.metrics, "tags": v.tags, "approval": v.approval, "aliases": list(v.aliases),
            "created": iso(v.created_at), "created_by": v.created_by}
    if approvals is not None:
        data["approvals"] = [{"decision": a.decision, "actor": a.actor, "comment": a.comment, "at": iso(a.at)}
                             for a in approvals]
    return data


def _audit(a: Any) -> dict[str, Any]:
    return {"id": a.id, "at": iso(a.at), "actor": a.actor, "action": a.action, "model": a.model,
            "version": a.version, "alias": a.alias, "before": a.before, "after": a.after, "detail": a.detail}


def models(client: Any) -> list[dict[str, Any]]:
    return client.registry.list_models()


def model(client: Any, name: str) -> dict[str, Any]:
    """A model: versions with approvals, aliases with their history, protected aliases, audit log."""
    reg = client.registry
    versions = reg.versions(name)
    aliases = reg.models.aliases(name)
    return {"name": name, "aliases": aliases, "protected_aliases": reg.protected_aliases(name),
            "versions": [_version(v, reg.models.approvals(name, v.version)) for v in versions],
            "alias_history": {a: [{"version": ver, "at": iso(at), "actor": by}
                                  for ver, at, by in reg.models.alias_history(name, a)] for a in aliases},
            "audit": [_audit(a) for a in reg.audit(name, limit=200)]}


def audit(client: Any, limit: int = 200) -> list[dict[str, Any]]:
    return [_audit(a) for a in client.registry.audit(None, limit=limit)]


TRAFFIC_WINDOW_S = 24 * 3600


def endpoints(client: Any) -> list[dict[str, Any]]:
    """Endpoints with their routes, and over the last 24 hours: requests, errors, mean latency and CPU
    per version (what servers wrote to ``serving_usage``) and the prediction log's volume."""
    import time

    since = time.time() - TRAFFIC_WINDOW_S
    traffic: dict[str, list[dict[str, Any]]] = {}
    for u in client.metadata.serving_usage.totals(since=since):
        traffic.setdefault(u.endpoint, []).append({
            "model": u.model, "version": u.version, "requests": u.requests, "errors": u.errors,
            "error_rate": u.errors / u.requests if u.requests else 0.0,
            "mean_latency_ms": 1000 * u.wall_s / u.requests if u.requests else None,
            "cpu_ms_per_request": 1000 * u.cpu_s / u.requests if u.requests else None})
    volume = prediction_log_volume(client.settings.artifact_root, since)
    return [{"name": e.name, "spec": e.spec, "created": iso(e.created_at), "updated": iso(e.updated_at),
             "traffic": traffic.get(e.name, []), "prediction_log": volume.get(e.name, {"files": 0, "rows": 0,
                                                                                       "bytes": 0})}
            for e in client.metadata.endpoints.list()]


def prediction_log_volume(root: str, since: float) -> dict[str, dict[str, int]]:
    """Files, rows and bytes of each endpoint's prediction log in the hours since ``since``: one listing,
    then only the Parquet footers (row counts), never the data."""
    import datetime as dt

    import fsspec
    import pyarrow.parquet as pq

    from conveyor.serving.prediction_log import hour_in_window, is_log_file

    fs, base = fsspec.core.url_to_fs(root)
    folder = base.rstrip("/") + "/predictions"
    try:
        found = fs.find(folder, detail=True)
    except (FileNotFoundError, OSError):
        return {}
    start = dt.datetime.fromtimestamp(since, dt.UTC)
    out: dict[str, dict[str, int]] = {}
    for path, info in found.items():
        if not is_log_file(path) or not hour_in_window(path, start, None) or "endpoint=" not in path:
            continue
        endpoint = path.split("endpoint=", 1)[1].split("/", 1)[0]
        entry = out.setdefault(endpoint, {"files": 0, "rows": 0, "bytes": 0})
        entry["files"] += 1
        entry["bytes"] += int(info.get("size") or 0)
        try:
            with fs.open(path, "rb") as fh:
                entry["rows"] += pq.ParquetFile(fh).metadata.num_rows
        except Exception:   # a file being replaced, or unreadable: counted by size only
            continue
    return out


def monitoring(client: Any) -> dict[str, Any]:
    """Monitors with their latest checks, oldest first (the reports' verdicts), and recent alerts."""
    auto = client.metadata.automation
    out = []
    for m in auto.monitors():
        out.append({"name": m.name, "endpoint": m.endpoint, "every_s": m.every_s, "enabled": m.enabled,
                    "next": iso(m.next_at), "config": m.config,
                    "checks": [{"id": c.id, "at": iso(c.at), "status": c.status, "rows": c.rows,
                                "drift_share": c.drift_share, "metric": c.metric, "p99_ms": c.p99_ms,
                                "findings": c.findings} for c in auto.checks(m.name, limit=50)]})
    alerts = [{"id": a.id, "source": a.source, "at": iso(a.at), "message": a.message, "delivery": a.delivery,
               "suppressed": a.suppressed} for a in auto.alerts(limit=100)]
    return {"monitors": out, "alerts": alerts}


def monitor_report(client: Any, name: str) -> Any:
    """The drift and quality report of a monitor's endpoint over its window ending now, as the HTML page
    `conveyor monitor report -o` writes (per-column plots), against the monitor's reference."""
    from starlette.responses import HTMLResponse

    from conveyor.monitoring.api import drift_report
    from conveyor.monitoring.report import to_html

    monitor = next((m for m in client.metadata.automation.monitors() if m.name == name), None)
    if monitor is None:
        known = ", ".join(m.name for m in client.metadata.automation.monitors()) or "(none)"
        raise NotFound(f"No monitor '{name}'. Monitors: {known}.")
    window = monitor.config.get("window") or f"{int(monitor.every_s)}s"
    report = drift_report(monitor.endpoint, window=window, reference=monitor.config.get("reference"), client=client)
    return HTMLResponse(to_html(report, f"Drift report — {monitor.endpoint} ({name}, last {window})"),
                        headers={"cache-control": "no-store"})


def automation(client: Any) -> dict[str, Any]:
    auto = client.metadata.automation
    return {
        "schedules": [{"name": s.name, "target": s.target, "cron": s.cron, "params": s.params, "enabled": s.enabled,
                       "next": iso(s.next_at)} for s in auto.schedules()],
        "triggers": [{"name": g.name, "on": f"{g.on_kind}:{g.on_value}", "target": g.target, "params": g.params,
                      "enabled": g.enabled, "max_concurrent": g.max_concurrent} for g in auto.triggers()],
        "firings": [{"id": f.id, "source": f"{f.source_kind}:{f.source}", "at": iso(f.at), "status": f.status,
                     "run": f.run_id, "cause": f.cause, "error": f.error, "attempts": f.attempts}
                    for f in auto.firings(limit=200)],
    }


def datasets(client: Any) -> list[dict[str, Any]]:
    return client.metadata.datasets.summary()


def dataset(client: Any, name: str) -> dict[str, Any]:
    ds = client.metadata.datasets
    if not ds.exists(name):
        raise NotFound(f"No dataset '{name}'. Datasets: {', '.join(ds.names()) or '(none)'}.")
    return {"name": name, "aliases": ds.aliases(name), "versions": [
        {"version": v.version, "kind": v.kind, "content_hash": v.content_hash, "rows": v.num_rows,
         "files": v.num_files, "size": v.size, "source": v.source, "run": v.run_id, "artifact": v.artifact_id,
         "schema": v.schema, "aliases": list(v.aliases), "created": iso(v.created_at)} for v in ds.versions(name)]}


def dataset_diff(client: Any, name: str, a: str | None, b: str | None, key: str | None) -> dict[str, Any]:
    """Two versions of a dataset compared (``conveyor data diff``): schema, rows added, removed and
    changed (by ``key``), and distributions."""
    from conveyor.data.datasets import DatasetCatalog

    ds = client.metadata.datasets
    if not ds.exists(name):
        raise NotFound(f"No dataset '{name}'. Datasets: {', '.join(ds.names()) or '(none)'}.")
    for field, value in (("a", a), ("b", b)):
        if not value or not value.isdigit():
            raise InvalidRequest(f"Name the version to compare as {field}=N (a whole number); got {value!r}.",
                                 field=field)
    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    catalog = DatasetCatalog(client.metadata, client.artifacts, client.settings.actor)
    return catalog.diff(f"{name}:{a}", f"{name}:{b}", key=keys).to_dict()


def studies(client: Any) -> list[dict[str, Any]]:
    """Tuning studies, from their trial runs (``kind='trial'``, tagged with the study)."""
    counts: dict[str, dict[str, Any]] = {}
    r = t.runs
    with client.metadata.runs.read() as conn:
        for row in conn.execute(select(r.c.tags, r.c.status, r.c.created_at).where(r.c.kind == "trial")):
            name = (row.tags or {}).get("study")
            if not name:
                continue
            s = counts.setdefault(name, {"name": name, "trials": 0, "by_status": {}, "started": row.created_at})
            s["trials"] += 1
            s["by_status"][row.status] = s["by_status"].get(row.status, 0) + 1
            s["started"] = min(s["started"], row.created_at)
    return [{**s, "started": iso(s["started"])} for s in sorted(counts.values(), key=lambda s: s["name"])]


def study(client: Any, name: str) -> dict[str, Any]:
    """A study's trials with their parameters and final metrics (what parallel coordinates draw)."""
    r, m = t.runs, t.metrics
    with client.metadata.runs.read() as conn:
        rows = [x for x in conn.execute(select(r).where(r.c.kind == "trial", r.c.name.like(f"{name}#%")))
                if (x.tags or {}).get("study") == name]
        if not rows:
            raise NotFound(f"No study '{name}' with trials in this store. See `conveyor studies list`.")
        finals: dict[str, dict[str, float]] = {x.id: {} for x in rows}
        for rid, key, value in conn.execute(select(m.c.run_id, m.c.key, m.c.value)
                                            .where(m.c.run_id.in_(list(finals))).order_by(m.c.id)):
            finals[rid][key] = value
    trials = sorted(({"run": x.id, "number": int((x.tags or {}).get("trial", -1)), "status": x.status,
                      "parameters": x.parameters or {}, "metrics": finals[x.id]} for x in rows),
                    key=lambda d: d["number"])
    return {"name": name, "trials": trials}
