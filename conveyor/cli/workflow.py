"""``conveyor init``, ``conveyor run`` and ``conveyor quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, executor_help, parse_params, print_json

ParamOpt = Annotated[Optional[list[str]], typer.Option("-p", "--param", help="Pipeline parameter KEY=VALUE (repeatable).")]  # noqa: UP007


def init(admin: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--admin", help="Name the store's first admin (only while it has none).")] = None) -> None:
    """Create the Conveyor home (.conveyor: SQLite metadata and artifact folder) or migrate it."""
    from conveyor.runtime.client import Client
    from conveyor.store.metadata import redact

    client = Client()
    client.settings.home.mkdir(parents=True, exist_ok=True)
    _ = client.metadata
    _ = client.artifacts
    c = console()
    c.print(f"[green]Ready.[/] metadata: {redact(client.settings.metadata_url)}")
    c.print(f"       artifacts: {client.settings.artifact_root}")
    if admin is not None:
        granted = client.registry.bootstrap_admin(admin)
        c.print(f"       admin: {admin}{'' if granted else ' (already admin)'}")


def execute(ref_or_pipeline: object, params: dict[str, object], *, no_cache: bool, executor: str | None,
            as_json: bool, from_text: bool = True, title: str | None = None, explain_cache: bool = False) -> object:
    """Run a pipeline with a live view and a summary; shared by ``run`` and ``quickstart``."""
    from conveyor.cli.live import LiveSteps, run_summary
    from conveyor.errors import StepFailed
    from conveyor.runtime.client import Client
    from conveyor.runtime.loader import load_pipeline

    pipeline = load_pipeline(ref_or_pipeline) if isinstance(ref_or_pipeline, str) else ref_or_pipeline
    client = Client()
    c = console()
    failure: StepFailed | None = None
    with LiveSteps(c, title or f"{pipeline.name}") as live:
        observer = None if as_json else live
        try:
            run = client.run_pipeline(pipeline, params, cache=not no_cache, executor=executor, from_text=from_text,
                                      observer=observer)
        except StepFailed as exc:
            failure = exc
            run = exc.run  # type: ignore[attr-defined]
    from conveyor.cli.cache_reasons import annotate, print_reasons

    if as_json:
        print_json(annotate(run.to_dict(), client, run.id))
    else:
        run_summary(c, run)
        if explain_cache:
            print_reasons(c, client, run.id)
    if failure is not None:
        raise failure
    return run


def run(
    target: Annotated[str, typer.Argument(help="FILE.py:PIPELINE or package.module:PIPELINE")],
    param: ParamOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step even if a cached result exists.")] = False,
    executor: Annotated[Optional[str], typer.Option(help=executor_help())] = None,  # noqa: UP007
    as_json: Annotated[bool, typer.Option("--json", help="Print the finished run as JSON.")] = False,
    explain_cache: Annotated[bool, typer.Option("--explain-cache", help="After the run, say why each step that "
                                                "ran missed the cache.")] = False,
) -> None:
    """Run a pipeline, showing each step's state live."""
    execute(target, parse_params(param), no_cache=no_cache, executor=executor, as_json=as_json,
            explain_cache=explain_cache)


def _closed_loop(c: Any) -> None:
    from conveyor.examples.closed_loop import MODEL, MONITOR, TRIGGER, run_loop

    c.print("[bold]Conveyor closed loop[/]: train and deploy → traffic drifts → monitor alerts → retrain → "
            "champion/challenger → promotion → the server switches\n")
    timeline = run_loop(echo=c.print)
    c.print(f"\nThe loop closed in {timeline.events[-1][0]:.1f}s. [bold]Next:[/]")
    for line in (f"conveyor monitors history {MONITOR}", "conveyor alerts list", f"conveyor firings list --source {TRIGGER}",
                 f"conveyor audit --model {MODEL}", f"conveyor models rollback {MODEL} --alias production",
                 "conveyor monitor report loop-api -o report.html"):
        c.print(f"  {line}")


def quickstart(
    param: ParamOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache")] = False,
    loop: Annotated[bool, typer.Option("--loop", help="Run the closed loop instead: serve, drift, alert, "
                                                      "retrain, promote.")] = False,
) -> None:
    """Run the example churn pipeline end to end on generated data (the main job behind `make demo`)."""
    c = console()
    if loop:
        _closed_loop(c)
        return
    from conveyor.examples.quickstart import training

    c.print("[bold]Conveyor quickstart[/]: churn model — load → validate → split → features → "
            "train 3 candidates in parallel → evaluate → pick best → publish if good enough\n")
    run = execute(training, parse_params(param), no_cache=no_cache, executor=None, as_json=False,
                  title="quickstart: training")
    steps = run.steps  # type: ignore[attr-defined]
    ran = [s for s in steps.values() if s.status == "succeeded"]
    cached = [s for s in steps.values() if s.cache_hit]
    if cached and not ran:
        c.print(f"\n[cyan]Cached re-run:[/] all {len(cached)} steps reused earlier results; nothing was recomputed. "
                "Use --no-cache to run them again.")
    elif cached:
        c.print(f"\n[cyan]{len(cached)} of {len(steps)} steps were cached.[/]")
    rid = run.id  # type: ignore[attr-defined]
    c.print("\n[bold]Next:[/]")
    for line in (f"conveyor runs show {rid}", f"conveyor runs logs {rid} --step train", "conveyor models show churn",
                 "conveyor runs list", f"conveyor run {Path('examples/quickstart.py')}:training -p rows=20000 -p threshold=0.8",
                 "conveyor quickstart            # again: a cached re-run",
                 "conveyor quickstart --loop     # serve, drift, alert, retrain, promote: the closed loop"):
        c.print(f"  {line}")
