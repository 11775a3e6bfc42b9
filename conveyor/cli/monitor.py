"""``conveyor monitor``: drift reports, late labels, performance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from conveyor.cli.output import console, print_json

app = typer.Typer(no_args_is_help=True)


def _drift_config(alpha: float | None, drift_share: float | None, method: list[str] | None) -> object:
    from conveyor.errors import InvalidRequest
    from conveyor.monitoring.drift import ColumnRule, DriftConfig

    rules = {}
    for item in method or []:
        column, sep, rest = item.partition("=")
        if not sep:
            raise InvalidRequest(f"--method {item!r} must look like COLUMN=METHOD[:THRESHOLD], e.g. age=psi:0.2.",
                                 field="method")
        name, _, threshold = rest.partition(":")
        rules[column] = ColumnRule(name, float(threshold) if threshold else None)
    kwargs: dict[str, object] = {"methods": rules}
    if alpha is not None:
        kwargs["alpha"] = alpha
    if drift_share is not None:
        kwargs["drift_share"] = drift_share
    return DriftConfig(**kwargs)


@app.command("report")
def report(endpoint: Annotated[Optional[str], typer.Argument(help="Endpoint whose prediction log to check.")] = None,  # noqa: UP007
           window: Annotated[str, typer.Option(help="How far back to read the prediction log (15m, 24h, 7d).")] = "24h",
           current: Annotated[Optional[str], typer.Option(help="Compare this file instead of the log.")] = None,  # noqa: UP007
           reference: Annotated[Optional[str], typer.Option(  # noqa: UP007
               help="NAME:VERSION, NAME@ALIAS or a file (default: the version that served the window).")] = None,
           output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the HTML report here.")] = None,  # noqa: UP007
           alpha: Annotated[Optional[float], typer.Option(help="Significance level (default 0.01).")] = None,  # noqa: UP007
           drift_share: Annotated[Optional[float], typer.Option(help="Share of drifted columns that means data set drift (default 0.3).")] = None,  # noqa: UP007
           method: Annotated[Optional[list[str]], typer.Option(help="Per-column rule: COLUMN=METHOD[:THRESHOLD].")] = None,  # noqa: UP007
           as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Drift and data quality of an endpoint's traffic (or a file) against a reference."""
    from conveyor.monitoring.api import drift_report
    from conveyor.monitoring.report import to_html

    result = drift_report(endpoint, window=window, current=current, reference=reference,
                          config=_drift_config(alpha, drift_share, method))
    if output is not None:
        output.write_text(to_html(result, f"Drift report — {endpoint or current}"), encoding="utf-8")
    if as_json:
        print_json(result.to_dict())
        return
    from rich.table import Table

    out = console()
    verdict = "[bold red]drift[/]" if result.dataset_drift else "[bold green]no drift[/]"
    out.print(f"{verdict}: {len(result.drifted_columns)} of {len(result.columns)} columns drifted "
              f"({result.drifted_share:.0%}, threshold {result.config['drift_share']:.0%}); "
              f"{result.reference_rows:,} reference rows, {result.current_rows:,} current rows")
    table = Table("column", "kind", "verdict", "why")
    for c in sorted(result.columns, key=lambda c: not c.drifted):
        table.add_row(c.name, c.kind, "[red]drifted[/]" if c.drifted else "stable", c.reason)
    if result.prediction is not None:
        c = result.prediction
        table.add_row("(prediction)", c.kind, "[red]drifted[/]" if c.drifted else "stable", c.reason)
    out.print(table)
    for q in result.quality:
        out.print(f"[yellow]quality[/] {q.column}: {q.message}")
    if output is not None:
        out.print(f"report written to {output}")


@app.command("labels")
def labels(file: Annotated[str, typer.Argument(help="Parquet or CSV with request ids and labels.")],
           id_column: Annotated[str, typer.Option(help="Column holding the request id.")] = "request_id",
           label_column: Annotated[str, typer.Option(help="Column holding the true label.")] = "label",
           endpoint: Annotated[Optional[str], typer.Option(help="Only for this endpoint.")] = None,  # noqa: UP007
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Store ground-truth labels that arrived late; they join the prediction log by request id."""
    from conveyor.monitoring.sources import ingest_labels
    from conveyor.runtime.client import Client

    n = ingest_labels(Client().settings.artifact_root, file, id_column=id_column, label_column=label_column,
                      endpoint=endpoint)
    if as_json:
        print_json({"labels": n, "endpoint": endpoint})
    else:
        console().print(f"stored {n:,} labels" + (f" for endpoint {endpoint}" if endpoint else ""))


@app.command("performance")
def performance(endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
                window: Annotated[str, typer.Option(help="How far back (24h, 7d).")] = "24h",
                every: Annotated[Optional[str], typer.Option(help="Also per bucket of this length (1h).")] = None,  # noqa: UP007
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Prediction quality of labelled traffic: accuracy/F1/ROC AUC or RMSE/MAE, per time window."""
    from conveyor.monitoring.api import endpoint_performance

    data = endpoint_performance(endpoint, window=window, every=every)
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    out = console()
    out.print(f"{endpoint}: {data['labelled']:,} labelled of {data['rows']:,} rows in {window}")
    out.print("  ".join(f"{k}={v:.4f}" for k, v in data["metrics"].items()) or "(no labelled rows yet)")
    if data["windows"]:
        names = sorted({k for w in data["windows"] for k in w["metrics"]})
        table = Table("start", "rows", "labelled", *names)
        for w in data["windows"]:
            table.add_row(w["start"], str(w["rows"]), str(w["labelled"]),
                          *(f"{w['metrics'].get(n, float('nan')):.4f}" for n in names))
        out.print(table)
