"""``conveyor data``: suggest a schema from a reference sample, validate data against one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json

app = typer.Typer(no_args_is_help=True)

_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json",
             ".ndjson": "json", ".json": "json", ".feather": "ipc", ".arrow": "ipc", ".ipc": "ipc"}


def read_table(location: str) -> Any:
    """A file (Parquet, CSV, JSON lines, Arrow/Feather; local or an fsspec URL) or a dataset (``NAME:3``,
    ``NAME@alias``) as an Arrow table."""
    import fsspec

    from conveyor.errors import ConfigurationError, NotFound

    fs, path = fsspec.core.url_to_fs(location)
    if not fs.exists(path):
        looks_like_a_file = "/" in location or any(location.endswith((s, s + ".gz")) for s in _SUFFIXES)
        if not looks_like_a_file:
            from conveyor.data.datasets import load_dataset

            return load_dataset(location)
        raise NotFound(f"No file at {location}. Give a Parquet, CSV, JSON-lines or Arrow file (local or s3://, gs://, "
                       "az://), or a dataset as NAME:VERSION or NAME@ALIAS.")
    if fs.isdir(path):
        import pyarrow.dataset as ds

        return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table()
    suffix = next((s for s in _SUFFIXES if path.endswith(s) or path.endswith(s + ".gz")), None)
    if suffix is None:
        raise ConfigurationError(f"{location}: cannot tell the file's format from its name; use one of "
                                 f"{', '.join(sorted(_SUFFIXES))}.")
    kind = _SUFFIXES[suffix]
    import pyarrow as pa

    try:
        with fs.open(path, "rb", compression="infer") as fh:
            if kind == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(fh)
            if kind == "csv":
                import pyarrow.csv as pcsv

                options = pcsv.ParseOptions(delimiter="\t") if suffix == ".tsv" else None
                return pcsv.read_csv(fh, parse_options=options)
            if kind == "json":
                import pyarrow.json as pjson

                return pjson.read_json(fh)
            import pyarrow.ipc as ipc

            return ipc.open_file(pa.BufferReader(fh.read())).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigurationError(f"{location}: cannot be read as {kind}: {str(exc).splitlines()[0]}. "
                                 "Check the file, or rename it to the suffix of its real format.") from None


@app.command("suggest")
def suggest(source: Annotated[str, typer.Argument(help="A reference sample: a file (Parquet, CSV, JSON lines, "
                                                       "Arrow) or a dataset NAME:VERSION / NAME@ALIAS.")],
            output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the schema here "  # noqa: UP007
                                                                                  "(default: print it).")] = None,
            name: Annotated[Optional[str], typer.Option(help="The schema's name.")] = None,  # noqa: UP007
            margin: Annotated[float, typer.Option(help="Slack added to observed ranges, as a share of their "
                                                       "span.")] = 0.1,
            max_categories: Annotated[int, typer.Option(help="Suggest categories for text columns with at "
                                                             "most this many distinct values.")] = 20,
            force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False) -> None:
    """Propose a commented YAML schema from a reference sample, to review and commit."""
    from conveyor.data.validation.loading import parse_schema
    from conveyor.data.validation.suggest import suggest_schema
    from conveyor.errors import Conflict

    if output is not None and output.exists() and not force:
        raise Conflict(f"{output} exists (perhaps an edited schema); pass --force to overwrite it, or choose "
                       "another -o.")
    table = read_table(source)
    text = suggest_schema(table, name=name or Path(source).stem.split(":")[0].split("@")[0], source=source,
                          margin=margin, max_categories=max_categories)
    parse_schema(text, source="suggested schema")   # what we write must load
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    console().print(f"schema for {table.num_columns} columns ({table.num_rows:,} reference rows) written to "
                    f"{output}; review it, then validate with `conveyor data validate DATA --schema {output}`")


@app.command("validate")
def validate(source: Annotated[str, typer.Argument(help="The data: a file or a dataset NAME:VERSION / NAME@ALIAS.")],
             schema: Annotated[Path, typer.Option("--schema", "-s", help="The schema file (YAML).")],
             report: Annotated[Optional[Path], typer.Option(help="Write the HTML report here.")] = None,  # noqa: UP007
             quarantine: Annotated[Optional[Path], typer.Option(  # noqa: UP007
                 help="Write the quarantined rows here (Parquet).")] = None,
             valid: Annotated[Optional[Path], typer.Option(help="Write the valid rows here (Parquet).")] = None,  # noqa: UP007
             as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Validate data against a schema; exits 3 when a constraint with policy fail does not hold."""
    import pyarrow.parquet as pq

    from conveyor.data.validation.loading import load_schema
    from conveyor.data.validation.validate import failure_message
    from conveyor.data.validation.validate import validate as run_validation
    from conveyor.errors import ValidationFailed

    parsed = load_schema(schema)
    result = run_validation(read_table(source), parsed, raise_on_fail=False)
    rep = result.report
    if report is not None:
        report.write_text(rep.to_html(), encoding="utf-8")
    if quarantine is not None:
        pq.write_table(result.quarantined, quarantine)
    if valid is not None:
        pq.write_table(result.valid, valid)
    if as_json:
        print_json(rep.to_dict())
    else:
        from rich.table import Table

        out = console()
        colors = {"passed": "green", "warned": "yellow", "quarantined": "magenta", "failed": "red", "skipped": "dim"}
        table = Table("constraint", "policy", "outcome", "failing", "share", "rows", "detail")
        for c in rep.constraints:
            rows = ", ".join(str(s["row"]) for s in c.sample[:5])
            table.add_row(c.name, c.policy, f"[{colors[c.outcome]}]{c.outcome}[/]",
                          f"{c.failed:,}" if c.scope == "rows" else ("table" if c.failed else ""),
                          f"{c.share:.2%}" if c.scope == "rows" else "", rows, c.detail)
        out.print(table)
        out.print(f"{rep.rows:,} rows: {rep.valid_rows:,} valid, {rep.quarantined_rows:,} quarantined")
        if report is not None:
            out.print(f"report written to {report}")
    if not rep.passed:
        raise ValidationFailed(failure_message(rep), report=rep.to_dict())
