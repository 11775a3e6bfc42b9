"""The ``conveyor`` command: one typer app, one module per command group, errors handled once here."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from conveyor.cli import artifacts as artifacts_cmd
from conveyor.cli import automation as automation_cmd
from conveyor.cli import batch as batch_cmd
from conveyor.cli import cost as cost_cmd
from conveyor.cli import datasets as datasets_cmd
from conveyor.cli import data as data_cmd
from conveyor.cli import export as export_cmd
from conveyor.cli import image as image_cmd
from conveyor.cli import models as models_cmd
from conveyor.cli import monitor as monitor_cmd
from conveyor.cli import runs as runs_cmd
from conveyor.cli import serving as serving_cmd
from conveyor.cli import studies as studies_cmd
from conveyor.cli import transfer as transfer_cmd
from conveyor.cli import ui as ui_cmd
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
models_cmd.app.command("copy")(transfer_cmd.copy_model)
runs_cmd.app.command("copy")(transfer_cmd.copy_run)
app.command("serve")(serving_cmd.serve)
models_cmd.app.command("export")(image_cmd.export_model)
app.command("serve-container")(image_cmd.serve_container)
app.command("build-image")(image_cmd.build_image)
app.add_typer(batch_cmd.app, name="batch", help="Batch scoring of large files.")
app.add_typer(studies_cmd.app, name="studies", help="Tuning studies: trials, best parameters, importances, plots.")
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
app.command("export")(export_cmd.export)
app.command("ui")(ui_cmd.ui)
app.add_typer(datasets_cmd.app, name="datasets", help="Versioned datasets: versions, aliases, lineage, diffs.")
app.add_typer(data_cmd.app, name="data", help="Data schemas: suggest one from a sample, validate data against it.")
app.command("gc")(cost_cmd.gc)
app.command("storage")(cost_cmd.storage)
app.add_typer(cost_cmd.app, name="cost", help="Right-sizing and cost estimates from what steps and servers used.")
step_app = typer.Typer(no_args_is_help=True)
app.add_typer(step_app, name="step", help="Run one step of an exported pipeline (what its tasks run).")


@step_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                  add_help_option=False)
def _step_exec(ctx: typer.Context) -> None:
    """One step of a run an orchestrator schedules: `conveyor step exec --help` lists the options."""
    from conveyor.runtime.entry import main as step_exec

    step_exec(ctx.args)


_state = {"debug": False}


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Print the full traceback of any error "
                                                          "(also CONVEYOR_DEBUG=1).")] = False) -> None:
    """Pipelines, tracking, registry, serving and monitoring for machine-learning models."""
    _state["debug"] = _state["debug"] or debug


def _is(exc: BaseException, class_name: str) -> bool:
    """True when ``exc`` is a click exception of that name, whichever click (typer may bundle its own
    copy, and re-export some classes, such as ``Abort``, from ``typer.exceptions``)."""
    return any(c.__name__ == class_name and ("click" in c.__module__ or c.__module__.startswith("typer"))
               for c in type(exc).__mro__)


def _command_path(argv: list[str]) -> str:
    """``conveyor runs resume`` for argv ``runs resume X -p``: the (sub)commands named on the line."""
    command = typer.main.get_command(app)
    path = ["conveyor"]
    for arg in argv:
        commands = getattr(command, "commands", None)
        if arg.startswith("-") or not commands or arg not in commands:
            if arg.startswith("-"):
                continue
            break
        command = commands[arg]
        path.append(arg)
    return " ".join(path)


def _debug() -> bool:
    from conveyor.config import debug_enabled

    return _state["debug"] or debug_enabled()


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error becomes one message and an exit code; a traceback only with --debug.

    Exit codes: a ConveyorError's own (2 for definition and parameter errors), 2 for a usage error
    (unknown command or option, a bad or missing value), 1 for an unexpected error, 130 for Ctrl-C.
    As the program itself (``argv`` taken from the command line), it exits when the command is
    done even if a step body left threads running (see ``_exit_past_stray_threads``).
    """
    if argv is not None:
        _main(argv)
        return
    try:
        _main(None)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    _exit_past_stray_threads(code)
    sys.exit(code)


def _exit_past_stray_threads(code: object) -> None:
    """Leave at once, and never wait for non-daemon threads that outlive the command.

    Python joins every non-daemon thread at exit, so a step body that left one running (a client's
    keep-alive loop, a forgotten worker) would keep ``conveyor run`` alive after the run is over,
    possibly for ever. The run is fully recorded by then; say which threads were left and go.
    """
    import threading

    stray = [t.name for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not stray:
        # Leave without the interpreter's finalization as well: Python's exit handlers run, but native
        # libraries' static destructors do not, and one of them aborting (SIGABRT, "terminate called
        # without an active exception") would turn a finished command into a crash.
        import atexit

        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)      # what sys.exit would print for a message
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    print(f"[conveyor] not waiting for {len(stray)} thread(s) left running by step code: "
          f"{', '.join(sorted(stray)[:5])}{' …' if len(stray) > 5 else ''}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _main(argv: list[str] | None) -> None:
    from conveyor.errors import ConveyorError, RunCancelled

    try:
        from conveyor.config import log_format

        if log_format() == "json":      # an unknown value is refused here, with the choices
            import logging

            from conveyor.observability.logs import configure

            configure(logging.WARNING, fmt="json")   # library warnings as JSON lines; the CLI's own output is unchanged
        rc = app(args=argv, standalone_mode=False, prog_name="conveyor")
    except ConveyorError as exc:
        from conveyor.cli.output import error_console

        if _debug():
            import traceback

            traceback.print_exc()
        error_console().print(f"[bold red]{exc.headline}:[/] {exc.message}", highlight=False, soft_wrap=True)
        if isinstance(exc, RunCancelled):
            # Step bodies still running in worker threads cannot be stopped; do not wait for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        # In non-standalone mode click's usage errors arrive here; match them by class name, since
        # the click that typer uses may be a copy bundled inside typer rather than the `click` module.
        if _is(exc, "ClickException"):
            if _debug():
                import traceback

                traceback.print_exc()
            if getattr(exc, "ctx", True) is None:   # raised before a context existed: add the hint click leaves out
                print(f"Usage: {_command_path(sys.argv[1:] if argv is None else argv)} [OPTIONS] ...\n"
                      f"Try '{_command_path(sys.argv[1:] if argv is None else argv)} --help' for help.\n",
                      file=sys.stderr)
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2))
        if _is(exc, "Abort"):
            hint = "" if sys.stdin.isatty() else " There is no terminal to confirm on: pass --yes to go ahead."
            print(f"Aborted; nothing was changed.{hint}", file=sys.stderr)
            sys.exit(1)
        if _debug():
            raise
        print(f"Unexpected error: {type(exc).__name__}: {exc}\n"
              "Run the command again with --debug (or CONVEYOR_DEBUG=1) to see the traceback, "
              "and report it if the cause is not in your own code.", file=sys.stderr)
        sys.exit(1)
    if isinstance(rc, int) and not isinstance(rc, bool) and rc:   # typer.Exit(code) in non-standalone mode
        sys.exit(rc)


if __name__ == "__main__":
    main()
