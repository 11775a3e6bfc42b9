"""The ``conveyor`` command: one typer app, one module per command group, errors handled once here."""

from __future__ import annotations

import os
import sys

import typer

from conveyor.cli import artifacts as artifacts_cmd
from conveyor.cli import automation as automation_cmd
from conveyor.cli import batch as batch_cmd
from conveyor.cli import models as models_cmd
from conveyor.cli import monitor as monitor_cmd
from conveyor.cli import runs as runs_cmd
from conveyor.cli import serving as serving_cmd
from conveyor.cli import workflow

app = typer.Typer(name="conveyor", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Pipelines, tracking, registry, serving and monitoring for machine-learning models.")
app.command("init")(workflow.init)
app.command("run", context_settings={"allow_interspersed_args": True})(workflow.run)
app.command("quickstart")(workflow.quickstart)
app.add_typer(runs_cmd.app, name="runs", help="List, inspect, resume, compare and delete runs.")
app.add_typer(artifacts_cmd.app, name="artifacts", help="Inspect and export artifacts.")
app.command("lineage")(artifacts_cmd.lineage)
app.add_typer(models_cmd.app, name="models", help="The model registry: versions, aliases, approvals, rollback.")
app.command("audit")(models_cmd.audit)
app.command("serve")(serving_cmd.serve)
app.add_typer(batch_cmd.app, name="batch", help="Batch scoring of large files.")
app.add_typer(serving_cmd.endpoints_app, name="endpoints", help="Serving endpoints: routes, canaries, shadows.")
app.add_typer(serving_cmd.keys_app, name="keys", help="API keys for the server.")
app.add_typer(monitor_cmd.app, name="monitor", help="Drift and quality reports, late labels, performance.")
app.add_typer(automation_cmd.monitors_app, name="monitors", help="Scheduled checks of an endpoint, with alerts.")
app.add_typer(automation_cmd.alerts_app, name="alerts", help="Alerts raised by monitors.")
app.add_typer(automation_cmd.webhooks_app, name="webhooks", help="Where alerts are delivered.")
app.add_typer(automation_cmd.schedules_app, name="schedules", help="Pipelines on cron schedules.")
app.add_typer(automation_cmd.triggers_app, name="triggers", help="Pipelines started by monitors or new data.")
app.add_typer(automation_cmd.firings_app, name="firings", help="What schedules and triggers started, and why.")
app.command("agent")(automation_cmd.agent)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a ConveyorError becomes its message and exit code, never a traceback."""
    from conveyor.errors import ConveyorError, RunCancelled

    try:
        app(args=argv, standalone_mode=False)
    except ConveyorError as exc:
        from conveyor.cli.output import error_console

        error_console().print(f"[bold red]{exc.headline}:[/] {exc.message}", highlight=False, soft_wrap=True)
        if isinstance(exc, RunCancelled):
            # Step bodies still running in worker threads cannot be stopped; do not wait for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click's own usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
