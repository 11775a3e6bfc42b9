"""One monitor check: read the endpoint's recent log, measure drift, performance and latency, decide.

A check is stored whatever it finds (``conveyor monitors history``). When something breaches, an
alert is raised — deduplicated: an alert with the same monitor and the same kinds of finding
inside the cool-down is stored as suppressed, not delivered, and starts no trigger.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest, NotFound

log = logging.getLogger("conveyor.automation")

DEFAULTS: dict[str, Any] = {"window": None, "reference": None, "drift_share": 0.3, "min_rows": 500,
                            "metric": None, "below": None, "p99_latency_ms": None, "cooldown_s": 3600.0,
                            "min_labels": 100}
METRICS = {"accuracy", "f1", "roc_auc", "rmse", "mae", "r2"}
LOWER_IS_BETTER = {"rmse", "mae"}


def monitor_config(**options: Any) -> dict[str, Any]:
    """Validated monitor options, defaults filled in."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise InvalidRequest(f"Unknown monitor options: {', '.join(sorted(unknown))}.", field="monitor")
    cfg = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if cfg["metric"] is not None:
        if cfg["metric"] not in METRICS:
            raise InvalidRequest(f"--metric {cfg['metric']!r}: choose one of {', '.join(sorted(METRICS))}.",
                                 field="metric")
        if cfg["below"] is None:
            raise InvalidRequest(f"--metric {cfg['metric']} needs a threshold: --below VALUE "
                                 "(for rmse/mae: the alert fires above it).", field="below")
    elif cfg["below"] is not None:
        raise InvalidRequest(f"--below {cfg['below']} needs the metric it bounds: add --metric NAME "
                             f"({', '.join(sorted(METRICS))}).", field="metric")
    if not 0 < float(cfg["drift_share"]) <= 1:
        raise InvalidRequest("--drift-share must be in (0, 1].", field="drift_share")
    for key, flag in (("min_rows", "--min-rows"), ("min_labels", "--min-labels")):
        if int(cfg[key]) < 0:
            raise InvalidRequest(f"{flag} {cfg[key]} is negative; give a count of rows, 0 or more.", field=key)
    if cfg["p99_latency_ms"] is not None and not float(cfg["p99_latency_ms"]) > 0:
        raise InvalidRequest(f"--p99-latency-ms {cfg['p99_latency_ms']} must be more than 0 milliseconds.",
                             field="p99_latency_ms")
    if float(cfg["cooldown_s"]) < 0:
        raise InvalidRequest("--cooldown must not be negative (0 delivers every alert).", field="cooldown")
    if cfg["window"] is not None:
        _positive_span(cfg["window"], "--window")
    return cfg


def _positive_span(text: str, flag: str) -> float:
    from conveyor.monitoring.sources import parse_window

    try:
        seconds = parse_window(text).total_seconds()
    except InvalidRequest:
        raise InvalidRequest(f"{flag} {text!r} is not a duration; write e.g. 15m, 24h or 7d.",
                             field=flag.lstrip("-")) from None
    if seconds <= 0:
        raise InvalidRequest(f"{flag} {text} is empty; give a positive duration such as 15m or 1h.",
                             field=flag.lstrip("-"))
    return seconds


def check_monitor(client: Any, endpoint: str, every: str, cfg: dict[str, Any]) -> float:
    """Check what a new monitor names before it is stored; returns its interval in seconds.

    The endpoint must exist, ``every`` must be a positive duration and a reference (``NAME:VERSION``,
    ``NAME@ALIAS`` or a file) must resolve to something with a profile to compare with.
    """
    from conveyor.monitoring.sources import looks_like_uri

    every_s = _positive_span(every, "--every")
    known = [e.name for e in client.metadata.endpoints.list()]
    if endpoint not in known:
        raise InvalidRequest(f"--endpoint {endpoint!r} does not exist. Endpoints: {', '.join(known) or '(none)'}; "
                             "create one first (`conveyor endpoints create`).", field="endpoint")
    reference = cfg.get("reference")
    if reference:
        if looks_like_uri(reference):
            import fsspec

            fs, path = fsspec.core.url_to_fs(reference)
            if not fs.exists(path):
                raise InvalidRequest(f"--reference {reference}: no file there. Give an existing Parquet/CSV file "
                                     "or NAME:VERSION of a registered model.", field="reference")
        else:
            try:
                has_profile = client.registry.profile(reference) is not None
            except NotFound as exc:
                raise InvalidRequest(f"--reference {reference}: {exc}", field="reference") from None
            if not has_profile:
                raise InvalidRequest(f"--reference {reference} has no reference profile: register it with "
                                     "data=<training frame>, or pass --reference FILE.", field="reference")
    return every_s


@dataclass
class CheckResult:
    status: str                      # ok | alert | skipped | error
    rows: int = 0
    drift_share: float | None = None
    metric: float | None = None
    p99_ms: float | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)


def run_check(client: Any, monitor: Any, *, until: Any = None) -> CheckResult:
    """Evaluate one monitor now (``until`` ends the window; tests pass a fixed time)."""
    from conveyor.monitoring.api import drift_report, endpoint_performance
    from conveyor.monitoring.drift import DriftConfig
    from conveyor.monitoring.sources import features_of, log_window, parse_window, served_version

    cfg = {**DEFAULTS, **monitor.config}
    window_text = cfg["window"] or f"{int(monitor.every_s)}s"
    window = parse_window(window_text)
    logged = log_window(client.settings.artifact_root, monitor.endpoint, window, until)
    result = CheckResult("ok", rows=logged.num_rows)
    # Only once the monitor is older than its window: before, every window is still filling up.
    settled = monitor.created_at + window.total_seconds() <= time.time()
    anomaly = row_count_anomaly(client, monitor.name, logged.num_rows) if settled else None
    if anomaly is not None:
        result.findings.append(anomaly)
    if logged.num_rows < int(cfg["min_rows"]):
        result.findings.append({"kind": "too_few_rows", "rows": logged.num_rows, "min_rows": cfg["min_rows"]})
        result.status = "alert" if anomaly is not None else "skipped"
        return result
    served = served_version(logged)
    reference = cfg["reference"] or (f"{served[0]}:{served[1]}" if served else None)
    report = drift_report(monitor.endpoint, current=features_of(logged), reference=reference,
                          config=DriftConfig(drift_share=float(cfg["drift_share"])), client=client)
    result.drift_share = report.drifted_share
    if report.dataset_drift:
        result.findings.append({"kind": "drift", "share": report.drifted_share, "threshold": cfg["drift_share"],
                                "columns": report.drifted_columns})
    if cfg["p99_latency_ms"] is not None:
        p99 = float(np.percentile(logged.column("latency_ms").to_numpy(), 99))
        result.p99_ms = p99
        if p99 > float(cfg["p99_latency_ms"]):
            result.findings.append({"kind": "latency", "p99_ms": p99, "threshold": cfg["p99_latency_ms"]})
    if cfg["metric"] is not None:
        perf = endpoint_performance(monitor.endpoint, window=window_text, until=until, client=client)
        value = perf["metrics"].get(cfg["metric"])
        if value is not None and perf["labelled"] >= int(cfg["min_labels"]):
            result.metric = float(value)
            worse = value > cfg["below"] if cfg["metric"] in LOWER_IS_BETTER else value < cfg["below"]
            if worse:
                result.findings.append({"kind": "performance", "metric": cfg["metric"], "value": value,
                                        "threshold": cfg["below"], "labelled": perf["labelled"]})
    if result.findings:
        result.status = "alert"
    return result


def row_count_anomaly(client: Any, monitor: str, rows: int, *, history: int = 10, factor: float = 2.0,
                      min_history: int = 3) -> dict[str, Any] | None:
    """A window whose row count is under 1/``factor`` or over ``factor`` times the median of the
    last ``history`` checks (traffic that stopped or flooded), once there are ``min_history`` of them."""
    past = [c.rows for c in client.metadata.automation.checks(monitor, history) if c.rows is not None]
    if len(past) < min_history:
        return None
    median = float(np.median(past))
    if median <= 0:
        return None
    if rows < median / factor or rows > median * factor:
        return {"kind": "row_count", "rows": rows, "median": median, "factor": factor}
    return None


def message_for(monitor: Any, result: CheckResult) -> str:
    parts = []
    for f in result.findings:
        if f["kind"] == "drift":
            parts.append(f"drift in {len(f['columns'])} columns ({f['share']:.0%} ≥ {f['threshold']:.0%}: "
                         f"{', '.join(f['columns'][:6])})")
        elif f["kind"] == "latency":
            parts.append(f"p99 latency {f['p99_ms']:.1f} ms > {f['threshold']} ms")
        elif f["kind"] == "row_count":
            parts.append(f"{f['rows']} rows against a usual {f['median']:.0f}")
        elif f["kind"] == "performance":
            parts.append(f"{f['metric']} {f['value']:.4f} past {f['threshold']} on {f['labelled']} labelled rows")
    return f"[{monitor.name}] endpoint {monitor.endpoint}: " + "; ".join(parts)


def check_and_alert(client: Any, monitor: Any, *, until: Any = None) -> tuple[CheckResult, Any]:
    """Run a check, store it, raise an alert when it breaches; returns the result and the alert (or None)."""
    store = client.metadata.automation
    try:
        result = run_check(client, monitor, until=until)
    except Exception as exc:     # a broken check is recorded, never kills the agent
        log.exception("monitor %s failed", monitor.name)
        store.add_check(monitor.name, "error", findings=[{"kind": "error", "message": str(exc)}])
        return CheckResult("error", findings=[{"kind": "error", "message": str(exc)}]), None
    store.add_check(monitor.name, result.status, rows=result.rows, drift_share=result.drift_share,
                    metric=result.metric, p99_ms=result.p99_ms, findings=result.findings)
    if result.status != "alert":
        return result, None
    kinds = "+".join(sorted({f["kind"] for f in result.findings}))
    alert = store.raise_alert(monitor.name, f"{monitor.name}:{kinds}", message_for(monitor, result),
                              {"endpoint": monitor.endpoint, "findings": result.findings},
                              float({**DEFAULTS, **monitor.config}["cooldown_s"]))
    (log.info if alert.suppressed else log.warning)("%s%s", "(suppressed) " if alert.suppressed else "",
                                                    alert.message)
    return result, alert
