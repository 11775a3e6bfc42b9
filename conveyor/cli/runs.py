"""``conveyor runs``: list, show, logs, resume, compare, delete."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from conveyor.cli.output import console, duration, executor_help, print_json, size, status, when

app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client():  # noqa: ANN202
    from conveyor.runtime.client import Client

    return Client()


@app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    pipeline: Annotated[Optional[str], typer.Option(help="Only this pipeline (or tracking run name).")] = None,  # noqa: UP007
    status_: Annotated[Optional[str], typer.Option("--status", help="Only runs in this state.")] = None,  # noqa: UP007
    as_json: JsonOpt = False,
) -> None:
    """List recent runs."""
    runs = _client().list_runs(limit=limit, pipeline=pipeline, status=status_)
    if as_json:
        print_json([r.to_dict(steps=False) for r in runs])
        return
    from rich.table import Table

    table = Table(title=f"{len(runs)} runs", title_justify="left")
    for col in ("id", "pipeline", "status", "started", "duration", "parameters"):
        table.add_column(col)
    for r in runs:
        rec = r.record
        took = None if rec.ended_at is None or rec.started_at is None else rec.ended_at - rec.started_at
        params = ", ".join(f"{k}={v}" for k, v in rec.parameters.items())
        table.add_row(rec.id, r.pipeline or "", status(rec.status), when(rec.started_at), duration(took), params[:60])
    console().print(table)


@app.command("show")
def show(run_id: str, as_json: JsonOpt = False,
         explain_cache: Annotated[bool, typer.Option("--explain-cache", help="Say why each step that ran "
                                                     "missed the cache.")] = False) -> None:
    """Show one run: parameters, environment, events, steps, what each attempt used, metrics and outputs."""
    from conveyor.cli.cache_reasons import annotate, print_reasons
    from conveyor.cli.live import run_summary

    client = _client()
    run = client.get_run(run_id)
    if as_json:
        data = run.to_dict()
        data["events"] = [{"at": at, "kind": kind, "detail": detail} for at, kind, detail in client.metadata.runs.events(run.id)]
        data["outputs"] = [{"step": s, "name": n, "artifact": a.id, "type": a.type_name, "size": a.size}
                           for s, n, a in client.metadata.artifacts.for_run(run.id)]
        data["attempts"] = client.metadata.steps.attempts(run.id)
        print_json(annotate(data, client, run.id))
        return
    c = console()
    rec = run.record
    c.print(f"[bold]Run {rec.id}[/]  {run.pipeline}  {status(rec.status)}")
    c.print(f"  started {when(rec.started_at)}  ended {when(rec.ended_at)}  ref {rec.pipeline_ref or '—'}")
    c.print(f"  parameters {rec.parameters}")
    if rec.git_commit:
        c.print(f"  git {rec.git_commit[:12]}{' (dirty)' if rec.git_dirty else ''}")
    if rec.error:
        c.print(f"  [red]error[/] {rec.error}")
    events = client.metadata.runs.events(rec.id)
    c.print("  history: " + " → ".join(f"{kind} {when(at)[11:]}" for at, kind, _ in events))
    run_summary(c, run)
    if explain_cache or any(s.status in ("succeeded", "failed") and not s.cache_hit for s in run.steps.values()):
        print_reasons(c, client, rec.id)
    _print_usage(c, client.metadata.steps.attempts(rec.id))
    outs = client.metadata.artifacts.for_run(rec.id)
    if outs:
        from rich.table import Table

        t = Table(title="Outputs", title_justify="left")
        for col in ("step", "output", "artifact", "type", "size"):
            t.add_column(col)
        for step, name, a in outs:
            t.add_row(step, name, a.id, (a.type_name or "").rsplit(".", 1)[-1], f"{a.size or 0:,}")
        c.print(t)


def _print_usage(c: object, attempts: list[dict[str, object]]) -> None:
    """The table of what each step attempt used (none when accounting was off)."""
    if not attempts:
        return
    from rich.table import Table

    executors = sorted({str(a["executor"]) for a in attempts if a["executor"]})
    t = Table(title=f"Resources per attempt ({', '.join(executors)})", title_justify="left",
              caption="a thread step's peak RSS is its whole process's" if "thread" in executors else None)
    for col in ("step", "#", "status", "wall", "CPU", "peak RSS", "read", "written"):
        t.add_column(col, justify="left" if col in ("step", "status") else "right", no_wrap=col != "step")
    for a in attempts:
        t.add_row(str(a["name"]), str(a["attempt"]), status(str(a["status"])), duration(a["wall_s"]),  # type: ignore[arg-type]
                  duration(a["cpu_s"]), size(a["peak_rss_bytes"]),  # type: ignore[arg-type]
                  size(a["bytes_read"]), size(a["bytes_written"]))  # type: ignore[arg-type]
    c.print(t)  # type: ignore[attr-defined]


def step_usage(attempts: list[dict[str, object]]) -> dict[str, dict[str, float | int | None]]:
    """Per step (node name): CPU seconds over its attempts, the largest peak RSS, attempts and preemptions."""
    out: dict[str, dict[str, float | int | None]] = {}
    for a in attempts:
        u = out.setdefault(str(a["name"]), {"cpu_s": None, "peak_rss_bytes": None, "attempts": 0,
                                             "preemptions": a.get("preemptions") or 0})
        u["attempts"] = int(u["attempts"] or 0) + 1
        if a["cpu_s"] is not None:
            u["cpu_s"] = float(u["cpu_s"] or 0.0) + float(a["cpu_s"])  # type: ignore[arg-type]
        if a["peak_rss_bytes"] is not None:
            u["peak_rss_bytes"] = max(int(u["peak_rss_bytes"] or 0), int(a["peak_rss_bytes"]))  # type: ignore[call-overload]
    return out


@app.command("logs")
def logs(run_id: str, step: Annotated[Optional[str], typer.Option(help="Only this step.")] = None) -> None:  # noqa: UP007
    """Print what each step wrote to stdout, stderr and logging."""
    client = _client()
    run = client.get_run(run_id)
    entries = client.metadata.steps.logs(run.id, step)
    if not entries:
        from conveyor.errors import NotFound

        raise NotFound(f"Run {run.id} has no step '{step}'." if step else f"Run {run.id} has no step logs yet.")
    c = console()
    for name, attempts, text in entries:
        c.rule(f"{name} ({attempts} attempt{'s' if attempts != 1 else ''})")
        c.out(text.rstrip() or "(no output)", highlight=False)


@app.command("resume")
def resume(
    run_id: str,
    param: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "-p", "--param", help="A new value for a pipeline parameter, KEY=VALUE (repeatable). Steps whose inputs "
                              "change run again; the rest are reused.")] = None,
    executor: Annotated[Optional[str], typer.Option(help=executor_help())] = None,  # noqa: UP007
) -> None:
    """Finish an interrupted or failed run; completed steps are not executed again."""
    from conveyor.cli.live import LiveSteps, run_summary
    from conveyor.cli.output import parse_params
    from conveyor.errors import StepFailed

    client = _client()
    c = console()
    params = parse_params(param)
    with LiveSteps(c, f"resuming {run_id}") as live:
        try:
            run = client.resume(run_id, params=params or None, from_text=True, executor=executor, observer=live)
        except StepFailed as exc:
            run_summary(c, exc.run)  # type: ignore[attr-defined]
            raise
    run_summary(c, run)


@app.command("compare")
def compare(run_ids: list[str], as_json: JsonOpt = False) -> None:
    """Parameters, metrics and per-step CPU and peak RSS of several runs side by side."""
    client = _client()
    runs = [client.get_run(r) for r in run_ids]
    rows: dict[str, list[str]] = {}
    data = []
    for i, run in enumerate(runs):
        params = {**run.parameters, **run.params}
        metrics = run.metrics
        usage = step_usage(client.metadata.steps.attempts(run.id))
        data.append({"id": run.id, "pipeline": run.pipeline, "status": run.status, "parameters": params,
                     "metrics": metrics, "resources": usage})
        for k, v in params.items():
            rows.setdefault(f"param  {k}", [""] * len(runs))[i] = str(v)
        for k, v in metrics.items():
            rows.setdefault(f"metric {k}", [""] * len(runs))[i] = f"{v:.6g}"
        for name, u in usage.items():
            rows.setdefault(f"step   {name} CPU", [""] * len(runs))[i] = duration(u["cpu_s"])
            rows.setdefault(f"step   {name} peak RSS", [""] * len(runs))[i] = size(u["peak_rss_bytes"])
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(title="Run comparison", title_justify="left")
    table.add_column("")
    for run in runs:
        table.add_column(run.id, justify="right")
    table.add_row("status", *[status(r.status) for r in runs])
    order = {"param": 0, "metri": 1, "step ": 2}
    for key in sorted(rows, key=lambda k: (order.get(k[:5], 3), k)):
        vals = rows[key]
        differs = len({v for v in vals}) > 1
        table.add_row(f"[bold]{key}[/]" if differs else key, *vals)
    console().print(table)


@app.command("delete")
def delete(run_id: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete a run's records (artifact bytes stay; other runs may share them)."""
    client = _client()
    run = client.get_run(run_id)
    if not yes and not typer.confirm(f"Delete run {run.id} ({run.pipeline}, {run.status})?"):
        raise typer.Abort()
    client.delete_run(run.id)
    console().print(f"Deleted run {run.id}.")


@app.command("import")
def import_(run_id: str,
            source: Annotated[Optional[str], typer.Option("--from", help="The artifact root the run's tasks wrote to (default: CONVEYOR_ARTIFACT_ROOT).")] = None,  # noqa: UP007
            no_copy: Annotated[bool, typer.Option("--no-copy", help="Keep the artifacts where they are (this store must read that root).")] = False,
            as_json: JsonOpt = False) -> None:
    """Import a run whose tasks recorded beside their outputs (an exported pipeline without a database)."""
    from conveyor.runtime.imports import import_run

    client = _client()
    report = import_run(client, run_id, source or client.settings.artifact_root, copy=not no_copy)
    if as_json:
        print_json(report.__dict__)
        return
    console().print(f"Imported run {report.run_id} ({report.status}): {report.steps} step runs, "
                    f"{report.copied} artifacts copied, {report.skipped_existing} already here"
                    + (f", models registered: {', '.join(report.models)}" if report.models else "")
                    + f". See it with `conveyor runs show {report.run_id}`.")
