"""``conveyor init``, ``conveyor run`` and ``conveyor quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, executor_help, parse_params, print_json

ParamOpt = Annotated[Optional[list[str]], typer.Option("-p", "--param", help="Pipeline parameter KEY=VALUE (repeatable).")]  # noqa: UP007


def init(admin: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--admin", help="Name the store's first admin (only while it has none).")] = None,
        ci: Annotated[Optional[str], typer.Option(  # noqa: UP007
            "--ci", help="Write a CI/CD workflow for the model's life instead: github.")] = None,
        pipeline: Annotated[Optional[str], typer.Option(  # noqa: UP007
            "--pipeline", help="With --ci: FILE.py:PIPELINE that trains and registers the model (found when the "
                               "project has one).")] = None,
        model: Annotated[Optional[str], typer.Option(  # noqa: UP007
            "--model", help="With --ci: the registered model's name (found from register_model calls).")] = None,
        minimum: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
            "--min", help="With --ci: METRIC=NUMBER the version must reach to be approved (repeatable).")] = None,
        maximum: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
            "--max", help="With --ci: METRIC=NUMBER the version must not exceed (repeatable).")] = None,
        endpoint: Annotated[Optional[str], typer.Option(  # noqa: UP007
            "--endpoint", help="With --ci: the endpoint whose traffic the scheduled drift check reads.")] = None,
        alias: Annotated[str, typer.Option("--alias", help="With --ci: the alias deployment moves.")] = "production",
        branch: Annotated[str, typer.Option("--branch", help="With --ci: the branch that trains and deploys.")] = "main",
        params: ParamOpt = None,
        force: Annotated[bool, typer.Option("--force", help="With --ci: replace an existing workflow.")] = False,
) -> None:
    """Create the Conveyor home (.conveyor: SQLite metadata and artifact folder) or migrate it.

    With ``--ci github``, write ``.github/workflows/conveyor.yml`` instead: tests, the training
    pipeline, registration, a gate on the evaluation metrics, the approval, the deployment of the
    alias and a scheduled drift check.
    """
    if ci is not None:
        _init_ci(ci, pipeline, model, minimum or [], maximum or [], endpoint, alias, branch, params or [], force)
        return
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


def _init_ci(ci: str, pipeline: str | None, model: str | None, minimum: list[str], maximum: list[str],
             endpoint: str | None, alias: str, branch: str, params: list[str], force: bool) -> None:
    from conveyor.delivery import github
    from conveyor.errors import ConfigurationError
    from conveyor.registry.gates import parse_bounds

    if ci != "github":
        raise ConfigurationError(f"--ci {ci!r} is not supported. Use --ci github (GitHub Actions).")
    project = Path.cwd()
    pipelines, models = github.guess(project)
    pipeline = pipeline or _only(pipelines, "--pipeline FILE.py:PIPELINE", "pipeline (a @cv.pipeline function)")
    model = model or _only(models, "--model NAME", "model name (a cv.register_model call)")
    spec = github.WorkflowSpec(pipeline=pipeline, model=model, minimums=parse_bounds(minimum, "--min"),
                               maximums=parse_bounds(maximum, "--max"), endpoint=endpoint, alias=alias,
                               branch=branch, install=github.install_command(project),
                               parameters={k: str(v) for k, v in parse_params(params).items()})
    path = github.write(spec, project, force=force)
    c = console()
    c.print(f"[green]Wrote[/] {path.relative_to(project)}: test → train {pipeline} → gate {model} → approve → "
            f"deploy @{alias}" + (f", drift check of {endpoint} on a schedule" if endpoint else "") + ".")
    c.print("Next: set secrets.CONVEYOR_METADATA_URL and vars.CONVEYOR_ARTIFACT_ROOT, create the environments "
            f"'model-approval' (with reviewers) and '{alias}', as the file's header says.")


def _only(found: list[str], option: str, what: str) -> str:
    from conveyor.errors import ConfigurationError

    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigurationError(f"No {what} was found in this folder's Python files. Name it with {option}.")
    raise ConfigurationError(f"Several candidates for the {what}: {', '.join(found)}. Name one with {option}.")


def execute(ref_or_pipeline: object, params: dict[str, object], *, no_cache: bool, executor: str | None,
            as_json: bool, from_text: bool = True, title: str | None = None, explain_cache: bool = False,
            tags: dict[str, str] | None = None) -> object:
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
                                      observer=observer, tags=tags)
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
    tag: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--tag", "-t", help="A tag on the run, key=value (repeat); `conveyor cost report --by tag` groups by them.")] = None,
) -> None:
    """Run a pipeline, showing each step's state live."""
    execute(target, parse_params(param), no_cache=no_cache, executor=executor, as_json=as_json,
            explain_cache=explain_cache, tags=_tags(tag))


def _tags(items: list[str] | None) -> dict[str, str]:
    """``--tag key=value`` pairs."""
    from conveyor.errors import ParameterError

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--tag {item!r} is not key=value. Write e.g. --tag team=search.")
        out[key.strip()] = value
    return out


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
