"""``conveyor studies``: tuning studies kept in the metadata database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json, when

app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _url() -> str:
    from conveyor.runtime.client import Client

    return str(Client().metadata.url)


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@app.command("list")
def list_studies(as_json: JsonOpt = False) -> None:
    """Every study with its trial counts and best value."""
    from conveyor.train.studies import list_studies as listing

    _quiet()
    studies = listing(_url())
    if as_json:
        print_json([{"name": s.name, "directions": list(s.directions), "trials": s.n_trials, "complete": s.complete,
                     "pruned": s.pruned, "failed": s.failed,
                     "best_value": list(s.best_value) if s.best_value else None, "started": when(s.started_at)}
                    for s in studies])
        return
    from rich.table import Table

    t = Table(title=f"{len(studies)} studies", title_justify="left")
    for col in ("study", "directions", "trials", "complete", "pruned", "failed", "best", "started"):
        t.add_column(col)
    for s in studies:
        t.add_row(s.name, ", ".join(s.directions), str(s.n_trials), str(s.complete), str(s.pruned), str(s.failed),
                  f"{s.best_value[0]:.6g}" if s.best_value else "–", when(s.started_at))
    console().print(t)


@app.command("show")
def show(name: str, as_json: JsonOpt = False,
         html_path: Annotated[Optional[Path], typer.Option(  # noqa: UP007
             "--html", help="Write the history, importances and parallel coordinates as one HTML page.")] = None,
         ) -> None:
    """One study: best trial, parameter importances, its trials with their runs; ``--html`` for plots."""
    from conveyor.runtime.client import Client
    from conveyor.train.report import importances, study_html
    from conveyor.train.studies import load

    _quiet()
    md = Client().metadata
    study = load(str(md.url), name)
    runs = {n: r[0] for n, r in md.trials.find(name).items()}
    if html_path is not None:
        html_path.write_text(study_html(study, runs), encoding="utf-8")
    data = _detail(study, runs, importances(study))
    if as_json:
        print_json(data)
        return
    c = console()
    c.print(f"[bold]Study {name}[/bold]  directions: {', '.join(data['directions'])}  trials: {len(data['trials'])}")
    for b in data["best"]:
        c.print(f"best trial #{b['number']}: values {b['values']}  params {b['params']}  run {b['run_id']}")
    if data["importances"]:
        c.print("importances: " + ", ".join(f"{k} {v:.1%}" for k, v in data["importances"].items()))
    from rich.table import Table

    t = Table(title_justify="left")
    for col in ("#", "state", "values", "params", "run"):
        t.add_column(col)
    for tr in data["trials"]:
        t.add_row(str(tr["number"]), tr["state"], ", ".join(f"{v:.6g}" for v in tr["values"] or ()),
                  ", ".join(f"{k}={v!r}" for k, v in tr["params"].items()), tr["run_id"] or "")
    c.print(t)
    if html_path is not None:
        c.print(f"HTML report: {html_path}")


def _detail(study: Any, runs: dict[int, str], imp: dict[str, float]) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    has_complete = any(t.state == TrialState.COMPLETE for t in trials)
    best = (list(study.best_trials) if len(study.directions) > 1 else [study.best_trial]) if has_complete else []
    row = lambda t: {"number": t.number, "state": t.state.name.lower(),   # noqa: E731
                     "values": list(t.values) if t.values else None, "params": dict(t.params),
                     "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                     "run_id": runs.get(t.number)}
    return {"name": study.study_name, "directions": [d.name.lower() for d in study.directions],
            "best": [row(t) for t in best], "importances": imp, "trials": [row(t) for t in trials]}
