"""``conveyor monitors | alerts | webhooks | schedules | triggers | firings | agent``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, parse_params, print_json, when

monitors_app = typer.Typer(no_args_is_help=True)
alerts_app = typer.Typer(no_args_is_help=True)
webhooks_app = typer.Typer(no_args_is_help=True)
schedules_app = typer.Typer(no_args_is_help=True)
triggers_app = typer.Typer(no_args_is_help=True)
firings_app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client() -> Any:
    from conveyor.runtime.client import Client

    return Client()


def _seconds(text: str) -> float:
    from conveyor.monitoring.sources import parse_window

    return parse_window(text).total_seconds()


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.table import Table

    table = Table(*columns)
    for r in rows:
        table.add_row(*(str(r.get(c, "")) for c in columns))
    console().print(table)


# --- monitors -------------------------------------------------------------------------------------

@monitors_app.command("create")
def monitor_create(name: str,
                   endpoint: Annotated[str, typer.Option(help="Endpoint to watch.")],
                   every: Annotated[str, typer.Option(help="How often (15m, 1h).")] = "1h",
                   window: Annotated[Optional[str], typer.Option(help="Log window per check (default: --every).")] = None,  # noqa: UP007
                   reference: Annotated[Optional[str], typer.Option(help="NAME:VERSION or file (default: served version).")] = None,  # noqa: UP007
                   drift_share: Annotated[float, typer.Option(help="Alert when this share of columns drifted.")] = 0.3,
                   min_rows: Annotated[int, typer.Option(help="Skip checks with fewer logged rows.")] = 500,
                   metric: Annotated[Optional[str], typer.Option(help="accuracy, f1, roc_auc, rmse, mae, r2.")] = None,  # noqa: UP007
                   below: Annotated[Optional[float], typer.Option(help="Alert when --metric falls below (rmse/mae: rises above).")] = None,  # noqa: UP007
                   min_labels: Annotated[int, typer.Option(help="Labelled rows needed to judge --metric.")] = 100,
                   p99_latency_ms: Annotated[Optional[float], typer.Option(help="Alert when p99 latency exceeds this.")] = None,  # noqa: UP007
                   cooldown: Annotated[str, typer.Option(help="Equal alerts inside this span are suppressed.")] = "1h") -> None:
    """Watch an endpoint: drift, performance on labelled traffic, latency; alerts on breaches."""
    from conveyor.automation.monitors import check_monitor, monitor_config

    cfg = monitor_config(window=window, reference=reference, drift_share=drift_share, min_rows=min_rows,
                         metric=metric, below=below, min_labels=min_labels, p99_latency_ms=p99_latency_ms,
                         cooldown_s=_seconds(cooldown))
    client = _client()
    every_s = check_monitor(client, endpoint, every, cfg)
    rec = client.metadata.automation.create_monitor(name, endpoint, every_s, cfg)
    console().print(f"Monitor {rec.name} watches {rec.endpoint} every {every}; run `conveyor agent` to check it.")


@monitors_app.command("list")
def monitor_list(as_json: JsonOpt = False) -> None:
    """Monitors and when each is next due."""
    rows = [{"name": m.name, "endpoint": m.endpoint, "every_s": m.every_s, "next": when(m.next_at), **m.config}
            for m in _client().metadata.automation.monitors()]
    print_json(rows) if as_json else _table(rows, ["name", "endpoint", "every_s", "next", "drift_share", "metric"])


@monitors_app.command("history")
def monitor_history(name: str, limit: int = 50, as_json: JsonOpt = False) -> None:
    """Each check's result, oldest first: a time series of drift share, metric and latency."""
    checks = _client().metadata.automation.checks(name, limit)
    rows = [{"at": when(c.at), "status": c.status, "rows": c.rows, "drift_share": c.drift_share, "metric": c.metric,
             "p99_ms": c.p99_ms, "findings": c.findings} for c in checks]
    print_json(rows) if as_json else _table(rows, ["at", "status", "rows", "drift_share", "metric", "p99_ms"])


@monitors_app.command("check")
def monitor_check(name: str, as_json: JsonOpt = False) -> None:
    """Run one check now (stored like the agent's)."""
    from conveyor.automation.monitors import check_and_alert

    client = _client()
    result, alert = check_and_alert(client, client.metadata.automation.monitor(name))
    data = {"status": result.status, "rows": result.rows, "drift_share": result.drift_share,
            "metric": result.metric, "p99_ms": result.p99_ms, "findings": result.findings,
            "alert": alert.id if alert else None, "suppressed": bool(alert and alert.suppressed)}
    print_json(data) if as_json else console().print(data)


@monitors_app.command("delete")
def monitor_delete(name: str,
                   cascade: Annotated[bool, typer.Option(help="Also delete the triggers it starts.")] = False) -> None:
    """Delete a monitor; refused while a trigger fires on it, unless --cascade deletes those too."""
    gone = _client().metadata.automation.delete_monitor(name, cascade=cascade)
    console().print(f"Deleted monitor {name}" + (f" and trigger(s) {', '.join(gone)}." if gone else "."))


# --- alerts and webhooks --------------------------------------------------------------------------

@alerts_app.command("list")
def alerts_list(source: Annotated[Optional[str], typer.Option(help="Only this monitor.")] = None,  # noqa: UP007
                limit: int = 50, as_json: JsonOpt = False) -> None:
    """Alerts, newest first, with delivery state (suppressed ones were inside a cool-down)."""
    rows = [_alert_row(a) for a in _client().metadata.automation.alerts(source, limit)]
    print_json(rows) if as_json else _table(rows, ["id", "at", "source", "suppressed", "delivery", "last_error",
                                                   "message"])


def _alert_row(a: Any) -> dict[str, Any]:
    return {"id": a.id, "at": when(a.at), "source": a.source, "suppressed": a.suppressed, "delivery": a.delivery,
            "attempts": a.attempts, "last_error": a.last_error, "message": a.message, "details": a.details}


@alerts_app.command("show")
def alerts_show(alert_id: str, as_json: JsonOpt = False) -> None:
    """One alert: its message, findings and delivery (attempts and the last delivery error)."""
    row = _alert_row(_client().metadata.automation.alert(alert_id))
    if as_json:
        print_json(row)
        return
    out = console()
    for key in ("id", "at", "source", "message", "suppressed", "delivery", "attempts", "last_error"):
        out.print(f"{key}: {row[key] if row[key] is not None else '-'}", markup=False, highlight=False)
    out.print(f"details: {row['details']}", markup=False, highlight=False)


@webhooks_app.command("add")
def webhook_add(name: str, url: str,
                source: Annotated[Optional[list[str]], typer.Option(help="Only alerts of these monitors.")] = None) -> None:  # noqa: UP007
    """Deliver alerts to a URL as Slack-compatible JSON (retried on failure)."""
    from conveyor.automation.webhooks import check_url

    check_url(url)
    _client().metadata.automation.add_webhook(name, url, source or None)
    console().print(f"Webhook {name} added.")


@webhooks_app.command("list")
def webhook_list(as_json: JsonOpt = False) -> None:
    rows = _client().metadata.automation.webhooks()
    print_json(rows) if as_json else _table(rows, ["name", "url", "sources"])


@webhooks_app.command("delete")
def webhook_delete(name: str) -> None:
    _client().metadata.automation.delete_webhook(name)
    console().print(f"Deleted webhook {name}.")


# --- schedules and triggers -----------------------------------------------------------------------

FreshOpt = Annotated[bool, typer.Option("--fresh", help="Run every step, ignoring cached results (for steps that "
                                                        "read the outside world).")]


def _check_target(target: str, params: dict[str, str], kind: str) -> str:
    from conveyor.automation.targets import resolve_target

    return resolve_target(target, params, kind)       # a typo is caught now, not at 3 a.m.


@schedules_app.command("create")
def schedule_create(target: Annotated[str, typer.Argument(help="FILE.py:PIPELINE")],
                    cron: Annotated[str, typer.Option(help='Cron expression, e.g. "0 3 * * *".')],
                    name: Annotated[Optional[str], typer.Option(help="Default: the pipeline's name.")] = None,  # noqa: UP007
                    param: Annotated[Optional[list[str]], typer.Option("-p", "--param", help="key=value")] = None,  # noqa: UP007
                    fresh: FreshOpt = False) -> None:
    """Run a pipeline on a cron schedule (the agent fires it; a missed time fires once on restart)."""
    from conveyor.automation.agent import next_cron

    params = parse_params(param)
    first = next_cron(cron, time.time())
    stored = _check_target(target, params, "schedule")
    sched = name or target.rpartition(":")[2]
    _client().metadata.automation.create_schedule(sched, stored, cron, params, first, fresh=fresh)
    console().print(f"Schedule {sched}: {stored} at '{cron}'{' (fresh runs)' if fresh else ''}, "
                    f"first at {when(first)}.")


@schedules_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    rows = [{"name": s.name, "target": s.target, "cron": s.cron, "params": s.params, "fresh": s.fresh,
             "next": when(s.next_at)}
            for s in _client().metadata.automation.schedules()]
    print_json(rows) if as_json else _table(rows, ["name", "target", "cron", "params", "fresh", "next"])


@schedules_app.command("delete")
def schedule_delete(name: str) -> None:
    _client().metadata.automation.delete_schedule(name)
    console().print(f"Deleted schedule {name}.")


@triggers_app.command("create")
def trigger_create(on: Annotated[str, typer.Option("--on", help="monitor:NAME, data:URI_PREFIX or stream:URL "
                                                                  "(redis://...?stream=NAME, sqs://QUEUE)")],
                   run: Annotated[str, typer.Option("--run", help="FILE.py:PIPELINE")],
                   param: Annotated[Optional[list[str]], typer.Option("-p", "--param", help="key=value; {object} is the new object, {source} the stream")] = None,  # noqa: UP007
                   max_concurrent: Annotated[int, typer.Option(help="Runs of this trigger at once.")] = 1,
                   name: Annotated[Optional[str], typer.Option(help="Default: PIPELINE-on-SOURCE.")] = None,  # noqa: UP007
                   fresh: FreshOpt = False) -> None:
    """Start a pipeline when a monitor alerts, a new object appears under a prefix, or messages wait in a
    Redis stream or SQS queue (the run's step consumes them and acknowledges them when it succeeds)."""
    import re

    from conveyor.errors import InvalidRequest

    kind, sep, value = on.partition(":")
    if not sep or kind not in ("monitor", "data", "stream") or not value:
        raise InvalidRequest(f"--on {on!r}: use monitor:NAME or data:URI_PREFIX (or stream:URL for a "
                             "Redis stream or an SQS queue).", field="on")
    if max_concurrent < 1:
        raise InvalidRequest("--max-concurrent must be at least 1.", field="max_concurrent")
    client = _client()
    label = ""                                   # a stream's name, for the default trigger name
    if kind == "monitor":
        known = [m.name for m in client.metadata.automation.monitors()]
        if value not in known:
            raise InvalidRequest(f"--on monitor:{value}: no such monitor. Monitors: {', '.join(known) or '(none)'}; "
                                 "create it first (`conveyor monitors create`).", field="on")
    elif kind == "stream":
        from conveyor.automation.streams import check_stream_location

        label = check_stream_location(value)
    elif "://" not in value:
        value = str(Path(value).expanduser().resolve())   # the agent may run in another folder
    params = parse_params(param)
    stored = _check_target(run, params, kind)
    if name is None:
        source = value if kind == "monitor" else label or value.rstrip("/").rsplit("/", 1)[-1]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run.rpartition(':')[2]}-on-{source}").strip("-")
    client.metadata.automation.create_trigger(name, kind, value, stored, params, max_concurrent, fresh=fresh)
    console().print(f"Trigger {name}: on {kind}:{value} run {stored}{' (fresh runs)' if fresh else ''}.")


@triggers_app.command("list")
def trigger_list(as_json: JsonOpt = False) -> None:
    rows = [{"name": t.name, "on": f"{t.on_kind}:{t.on_value}", "run": t.target, "params": t.params,
             "max_concurrent": t.max_concurrent, "fresh": t.fresh} for t in _client().metadata.automation.triggers()]
    print_json(rows) if as_json else _table(rows, ["name", "on", "run", "params", "max_concurrent", "fresh"])


@triggers_app.command("delete")
def trigger_delete(name: str) -> None:
    _client().metadata.automation.delete_trigger(name)
    console().print(f"Deleted trigger {name}.")


@firings_app.command("list")
def firings_list(source: Annotated[Optional[str], typer.Option(help="Only this schedule or trigger.")] = None,  # noqa: UP007
                 limit: int = 50, as_json: JsonOpt = False) -> None:
    """Each firing: its cause and the run it started."""
    rows = [{"id": f.id, "at": when(f.at), "kind": f.source_kind, "source": f.source, "status": f.status,
             "run_id": f.run_id, "cause": f.cause, "error": f.error, "attempts": f.attempts,
             "launcher_pid": f.launcher_pid, "launcher_host": f.launcher_host}
            for f in _client().metadata.automation.firings(source, limit=limit)]
    print_json(rows) if as_json else _table(rows, ["id", "at", "kind", "source", "status", "attempts", "run_id",
                                                   "error"])


@firings_app.command("retry")
def firings_retry(firing_id: str) -> None:
    """Queue a failed firing again (after fixing what made it fail); the agent launches it next tick."""
    _client().metadata.automation.retry_firing(firing_id)
    console().print(f"Firing {firing_id} is pending again.")


def agent(tick: Annotated[float, typer.Option(help="Seconds between rounds.")] = 5.0,
          once: Annotated[bool, typer.Option(help="Do one round and exit.")] = False,
          metrics_port: Annotated[Optional[int], typer.Option(  # noqa: UP007
              "--metrics-port", help="Serve Prometheus metrics of runs and steps on this port (/metrics).")] = None,
          metrics_host: Annotated[str, typer.Option(
              "--metrics-host", help="Address the metrics listen on (0.0.0.0 for a scraper elsewhere).")] = "127.0.0.1",
          ) -> None:
    """Run schedules, event sources, monitors and triggers until SIGTERM."""
    import logging

    from conveyor.automation.agent import Agent

    from conveyor.observability.logs import configure

    configure(logging.INFO)
    client = _client()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from conveyor.observability.metrics import registry_for

        from conveyor.errors import ConfigurationError

        if not 0 < metrics_port < 65536:
            raise ConfigurationError(f"--metrics-port {metrics_port} is not a TCP port; give one in 1-65535.")
        try:
            start_http_server(metrics_port, addr=metrics_host, registry=registry_for(client.metadata))
        except OSError as exc:
            raise ConfigurationError(f"Cannot serve metrics on {metrics_host}:{metrics_port} ({exc.strerror or exc}); "
                                     "choose a free port with --metrics-port, or another --metrics-host.") from None
        logging.getLogger("conveyor.automation").info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    a = Agent(client, tick_s=tick)
    if once:
        a.tick()
        if a.deliverer is not None:
            a.deliverer.deliver_pending()
        return
    a.run_forever()
