"""``conveyor datasets``: versions, aliases, lineage and diffs of datasets from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json, when

app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
KeyOpt = Annotated[Optional[list[str]],  # noqa: UP007
                   typer.Option("--key", "-k", help="Column(s) that identify a row; repeat for a composite key.")]
HtmlOpt = Annotated[Optional[Path], typer.Option("--html", help="Also write the diff as an HTML page.")]  # noqa: UP007


def _catalog() -> Any:
    from conveyor.data.datasets import DatasetCatalog
    from conveyor.runtime.client import Client

    c = Client()
    return DatasetCatalog(c.metadata, c.artifacts, c.settings.actor)


def version_dict(v: Any) -> dict[str, Any]:
    from conveyor.runtime.run import iso

    return {"dataset": v.dataset, "version": v.version, "ref": v.ref, "aliases": list(v.aliases), "kind": v.kind,
            "content_hash": v.content_hash, "rows": v.num_rows, "files": v.num_files, "size": v.size,
            "schema": v.schema, "source": v.source, "run_id": v.run_id, "created": iso(v.created_at),
            "created_by": v.created_by}


@app.command("list")
def list_datasets(as_json: JsonOpt = False) -> None:
    """Registered datasets with their latest version and aliases."""
    items = _catalog().list()
    if as_json:
        print_json(items)
        return
    from rich.table import Table

    t = Table(title=f"{len(items)} datasets", title_justify="left")
    for col in ("dataset", "versions", "latest", "aliases"):
        t.add_column(col)
    for d in items:
        t.add_row(d["name"], str(d["versions"]), str(d["latest"]),
                  ", ".join(f"{a}→{v}" for a, v in sorted(d["aliases"].items())))
    console().print(t)


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME (every version), NAME:VERSION or NAME@ALIAS")],
         as_json: JsonOpt = False) -> None:
    """A dataset's versions, or one version with its schema and lineage."""
    from conveyor.data.dataset_refs import parse_dataset_ref

    catalog = _catalog()
    parsed = parse_dataset_ref(ref)
    if parsed.version is None and parsed.alias is None:
        versions = catalog.versions(parsed.name)
        if as_json:
            print_json([version_dict(v) for v in versions])
            return
        from rich.table import Table

        t = Table(title=f"dataset {parsed.name}", title_justify="left")
        for col in ("version", "aliases", "kind", "rows", "files", "size", "content", "run", "created"):
            t.add_column(col)
        for v in versions:
            t.add_row(str(v.version), ", ".join(v.aliases), v.kind, _n(v.num_rows), _n(v.num_files), _n(v.size),
                      v.content_hash.split(":")[-1][:12], v.run_id or "", when(v.created_at))
        console().print(t)
        return
    version = catalog.resolve(parsed)
    lineage = catalog.lineage(version.ref)
    if as_json:
        print_json(version_dict(version) | {"lineage": {
            "produced": [{"run_id": u.run_id, "step_run_id": u.step_run_id} for u in lineage["produced"]],
            "read": [{"run_id": u.run_id, "step_run_id": u.step_run_id} for u in lineage["read"]]}})
        return
    from rich.table import Table

    out = console()
    out.print(f"[bold]{version.ref}[/]  {', '.join(version.aliases)}  {version.kind}, {_n(version.num_rows)} rows"
              + (f", {_n(version.num_files)} files" if version.num_files is not None else "")
              + f", {version.content_hash}")
    if version.source:
        out.print(f"source: {version.source}")
    schema = Table(title="schema", title_justify="left")
    for col in ("column", "type", "nullable"):
        schema.add_column(col)
    for f in version.schema:
        schema.add_row(f["name"], f["type"], "yes" if f["nullable"] else "no")
    out.print(schema)
    uses = Table(title="lineage", title_justify="left")
    for col in ("role", "run", "step run"):
        uses.add_column(col)
    for u in lineage["produced"] + lineage["read"]:
        uses.add_row(u.role, u.run_id or "", u.step_run_id or "")
    out.print(uses)


def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


@app.command("alias")
def alias(ref: Annotated[str, typer.Argument(help="NAME:VERSION to point the alias at (NAME with --remove)")],
          name: Annotated[str, typer.Argument(help="alias, e.g. train")],
          remove: Annotated[bool, typer.Option("--remove", help="Delete the alias instead.")] = False) -> None:
    """Point an alias (customers@train) at a version, or remove it."""
    from conveyor.data.dataset_refs import parse_dataset_ref

    catalog = _catalog()
    if remove:
        dataset = parse_dataset_ref(ref).name
        catalog.remove_alias(dataset, name)
        console().print(f"Removed alias {dataset}@{name}.")
        return
    version = catalog.set_alias(ref, name)
    console().print(f"{version.dataset}@{name} → {version.ref}")


@app.command("diff")
def diff(a: Annotated[str, typer.Argument(help="the version before, e.g. customers:3")],
         b: Annotated[str, typer.Argument(help="the version after, e.g. customers:4")],
         key: KeyOpt = None, html: HtmlOpt = None,
         examples: Annotated[int, typer.Option("--examples", help="Example rows per kind of change.")] = 5,
         as_json: JsonOpt = False) -> None:
    """Schema changes, rows added / removed / changed by key, and distribution changes."""
    result = _catalog().diff(a, b, key=key or None, examples=examples)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(result.to_html(), encoding="utf-8")
    if as_json:
        print_json(result.to_dict())
        return
    print_diff(result)
    if html is not None:
        console().print(f"HTML: {html}")


def print_diff(d: Any) -> None:
    """The diff as rich tables in the terminal."""
    from rich.table import Table

    out = console()
    a, b = d.names
    out.print(f"[bold]{a} → {b}[/]  rows {d.rows[0]:,} → {d.rows[1]:,}"
              + (f"  (key: {', '.join(d.key)})" if d.key else "  (no key: whole rows compared)"))
    summary = Table(show_header=True)
    for col in ("added", "removed", "changed", "unchanged"):
        summary.add_column(col, justify="right")
    summary.add_row(f"[green]{d.added:,}[/]", f"[red]{d.removed:,}[/]", _n(d.changed), _n(d.unchanged))
    out.print(summary)
    if d.schema_changed:
        t = Table(title="schema", title_justify="left")
        for col in ("column", "change", "before", "after"):
            t.add_column(col)
        for c in d.columns_added:
            t.add_row(c["name"], "[green]added[/]", "", c["type"])
        for c in d.columns_removed:
            t.add_row(c["name"], "[red]removed[/]", c["type"], "")
        for c in d.type_changes:
            t.add_row(c["name"], "[yellow]type[/]", c["before"], c["after"])
        out.print(t)
    else:
        out.print("schema: unchanged")
    if d.changed_by_column or d.not_compared:
        t = Table(title="changed values by column", title_justify="left")
        t.add_column("column")
        t.add_column("rows changed", justify="right")
        for c, n in sorted(d.changed_by_column.items(), key=lambda x: -x[1]):
            t.add_row(c, f"{n:,}")
        for c, why in d.not_compared.items():
            t.add_row(c, f"not compared: {why}")
        out.print(t)
    for kind in ("added", "removed"):
        rows = d.examples.get(kind) or []
        if rows:
            t = Table(title=f"rows {kind} (examples)", title_justify="left")
            for col in rows[0]:
                t.add_column(str(col))
            for r in rows:
                t.add_row(*[str(v) for v in r.values()])
            out.print(t)
    if d.examples.get("changed"):
        t = Table(title="rows changed (examples)", title_justify="left")
        for col in ("key", "column", "before", "after"):
            t.add_column(col)
        for e in d.examples["changed"]:
            k = ", ".join(f"{n}={v}" for n, v in e["key"].items())
            for col, (old, new) in e["changes"].items():
                t.add_row(k, col, str(old), str(new))
        out.print(t)
    if d.distributions:
        t = Table(title="distributions (monitoring statistics)", title_justify="left")
        for col in ("column", "kind", "distribution", "statistics", "rule"):
            t.add_column(col)
        for c in d.distributions:
            st = c["statistics"]
            main = (f"KS D={st['ks_statistic']:.3f} PSI={st['psi']:.3f}" if "ks_statistic" in st else
                    f"JS={st['js_distance']:.3f} PSI={st['psi']:.3f}" if "js_distance" in st else "")
            t.add_row(c["column"], c["kind"], "[red]changed[/]" if c["drifted"] else "same", main, c["reason"])
        out.print(t)
