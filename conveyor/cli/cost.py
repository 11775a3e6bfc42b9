"""``conveyor gc``, ``conveyor storage`` and ``conveyor cost``: storage lifecycle, right-sizing, estimates."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, duration, print_json, size

app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
SCHEMES = {"s3": "aws", "s3a": "aws", "gs": "gcp", "gcs": "gcp", "az": "azure", "abfs": "azure", "abfss": "azure"}


def _client() -> Any:
    from conveyor.runtime.client import Client

    return Client()


def _prices(client: Any) -> Any:
    from conveyor.cost.prices import load_prices

    return load_prices(client.settings.prices)


def _cloud_of(root: str) -> str:
    """The cloud whose storage a root is on (aws for a local folder)."""
    scheme = root.split("://", 1)[0] if "://" in root else ""
    return SCHEMES.get(scheme, "aws")


def _money(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"


# --- gc -------------------------------------------------------------------------------------------

def gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
       older_than: Annotated[str, typer.Option("--older-than", help="Retention: runs last active more recently, "
                                               "and files written more recently, are kept (30d, 12h, 2w).")] = "30d",
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
       root: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
           "--root", help="Another artifact root to sweep too (repeat); the configured one always is.")] = None,
       as_json: JsonOpt = False) -> None:
    """Remove artifacts nothing keeps: not a model or dataset version, not used by a run within retention.

    Metadata rows go first, in one transaction, then the bytes; files in the root that no row
    knows (older than the retention) go too. See docs/cost.md for every rule that keeps an artifact.
    """
    from conveyor.cost.gc import collect
    from conveyor.cost.periods import parse_age

    age = parse_age(older_than)
    if not dry_run and not yes and not sys.stdin.isatty():
        # refused before any work, the way every confirmation of the CLI ends without a terminal
        # (main.py prints "Aborted; nothing was changed. There is no terminal to confirm on: pass --yes")
        raise typer.Abort()
    client = _client()
    extra = [r for r in dict.fromkeys(root or []) if r.rstrip("/") != client.settings.artifact_root.rstrip("/")]
    stores = [client.artifacts] + [_store(client, r) for r in extra]
    if not dry_run and not yes:
        plan = collect(client.metadata, stores, older_than_s=age, dry_run=True)
        _print_gc(plan)
        if not (plan.rows_deleted or plan.objects_deleted or plan.checkpoints_deleted
                or any(r.temporary_deleted for r in plan.roots)):
            return
        points = f" and {plan.checkpoints_deleted} checkpoint(s)" if plan.checkpoints_deleted else ""
        if not typer.confirm(f"Remove {plan.rows_deleted} artifact row(s) and {plan.objects_deleted} object(s)"
                             f"{points} ({size(plan.bytes_freed)})?"):
            raise typer.Abort()
    report = collect(client.metadata, stores, older_than_s=age, dry_run=dry_run)
    if as_json:
        print_json(report.to_dict())
        return
    _print_gc(report)


def _store(client: Any, root: str) -> Any:
    from conveyor.runtime.worker import artifact_store

    return artifact_store(root, client.settings.inline_max_bytes)


def _print_gc(report: Any) -> None:
    from rich.table import Table

    from conveyor.cost.periods import describe_age

    verb = "would remove" if report.dry_run else "removed"
    table = Table(title=f"gc {verb} (retention {describe_age(report.older_than_s)})", title_justify="left")
    for col in ("root", "examined", "objects", "orphans", "temporary", "checkpoints", "kept by records", "freed"):
        table.add_column(col, justify="left" if col == "root" else "right")
    for r in report.roots:
        table.add_row(r.root, str(r.examined), str(r.objects_deleted), str(r.orphans_deleted),
                      str(r.temporary_deleted), f"{r.checkpoints_deleted} ({r.checkpoints_kept} kept)",
                      str(r.kept_by_documents), size(r.bytes_freed + r.orphan_bytes + r.checkpoint_bytes))
    out = console()
    out.print(table)
    rows = "Artifact rows to remove" if report.dry_run else "Artifact rows removed"
    out.print(f"{rows}: {report.rows_deleted} ({report.inline_rows_deleted} inline) from {report.runs_touched} "
              f"run(s); kept: {report.rows_kept}. Bytes {'to free' if report.dry_run else 'freed'}: "
              f"{size(report.bytes_freed)}{' (dry run: nothing changed)' if report.dry_run else ''}. "
              f"Took {duration(report.seconds)}.", highlight=False)


# --- storage --------------------------------------------------------------------------------------

def storage(by: Annotated[str, typer.Option("--by", help="Group by pipeline, model or dataset.")] = "pipeline",
            as_json: JsonOpt = False) -> None:
    """Bytes in the artifact store by pipeline, model or dataset (each object once per group)."""
    from conveyor.cost.storage import storage_usage

    rows, objects, total = storage_usage(_client().metadata, by)
    if as_json:
        print_json({"by": by, "rows": [r.to_dict() for r in rows], "unique_objects": objects, "unique_bytes": total})
        return
    from rich.table import Table

    table = Table(title=f"Stored bytes by {by}", title_justify="left")
    cols = [by, "objects", "bytes"] + (["versions"] if by != "pipeline" else []) + \
        (["referenced files"] if by == "dataset" else [])
    for col in cols:
        table.add_column(col, justify="left" if col == by else "right")
    for r in rows:
        cells = [r.name, str(r.objects), size(r.bytes)]
        if by != "pipeline":
            cells.append(str(r.versions))
        if by == "dataset":
            cells.append(size(r.referenced_bytes or 0))
        table.add_row(*cells)
    out = console()
    out.print(table)
    out.print(f"The store holds {objects} distinct object(s), {size(total)} in all; an object counts in "
              "every group that uses it.", highlight=False)


# --- cost recommend / report ----------------------------------------------------------------------

@app.command("recommend")
def recommend(target: Annotated[str, typer.Argument(metavar="FILE.py:PIPELINE", help="The pipeline.")],
              last: Annotated[int, typer.Option("--last", min=1, help="How many of its newest runs to read.")] = 20,
              headroom: Annotated[float, typer.Option("--headroom", min=0.0,
                                                      help="Margin above what was used (0.25: 25 %).")] = 0.25,
              as_json: JsonOpt = False) -> None:
    """Per step: resources asked vs used over the last runs, a recommendation, and the smallest instance per cloud."""
    from conveyor.cost.rightsizing import GIB
    from conveyor.cost.rightsizing import recommend as recommend_steps
    from conveyor.runtime.loader import load_pipeline

    pipeline = load_pipeline(target)
    client = _client()
    prices = _prices(client)
    steps, run_ids = recommend_steps(pipeline, client.metadata, prices, last=last, headroom=headroom)
    if as_json:
        print_json({"estimate": True, "pipeline": pipeline.name, "runs": run_ids, "headroom": headroom,
                    "prices_as_of": prices.as_of.isoformat(), "prices_source": prices.origin,
                    "steps": [s.to_dict() for s in steps]})
        return
    from rich.table import Table

    def res(r: Any) -> str:
        cpu = "—" if r.cpus is None else f"{r.cpus:g}"
        mem = "—" if r.memory_bytes is None else f"{r.memory_bytes / GIB:.2f} GiB"
        return f"{cpu} CPU, {mem}" + (f", {r.gpus} GPU" if r.gpus else "")

    table = Table(title=f"Right-sizing {pipeline.name} over its last {len(run_ids)} run(s)", title_justify="left")
    for col in ("step", "attempts", "requested", "mean / peak cores", "p95 memory", "recommended",
                *prices.clouds, "note"):
        table.add_column(col)
    for s in steps:
        cores = "—" if s.peak_cores is None else f"{s.mean_cores:.2f} / {s.peak_cores:.2f}"
        mem = "—" if s.p95_memory_bytes is None else f"{s.p95_memory_bytes / GIB:.2f} GiB"
        fits = [("—" if i is None else f"{i['name']} ({_money(i['on_demand'])}/h)") for i in s.instances.values()]
        table.add_row(s.step, f"{s.measured}/{s.attempts}", res(s.requested), cores, mem, res(s.recommended),
                      *fits, s.note)
    out = console()
    out.print(table)
    out.print(f"Estimates: instance prices are {prices.currency} on demand per hour from the {prices.describe()}.",
              highlight=False)


@app.command("report")
def report(since: Annotated[str, typer.Option("--since", help="The window: 30d, 12h, 2w.")] = "30d",
           by: Annotated[str, typer.Option("--by", help="Group by pipeline, step, tag, model or endpoint.")] = "pipeline",
           cloud: Annotated[Optional[str], typer.Option(  # noqa: UP007
               "--cloud", help="Price with aws, gcp or azure (default: the artifact root's cloud, else aws).")] = None,
           spot: Annotated[bool, typer.Option("--spot", help="Price compute at spot rates.")] = False,
           as_json: JsonOpt = False) -> None:
    """Estimated cost of compute (hours x price), storage (bytes x price) and serving (CPU per 1,000 requests)."""
    from conveyor.cost.periods import parse_age
    from conveyor.cost.report import cost_report

    window = parse_age(since, "--since")
    client = _client()
    prices = _prices(client)
    result = cost_report(client.metadata, prices, since_s=window, by=by,
                         cloud=cloud or _cloud_of(client.settings.artifact_root), spot=spot)
    if as_json:
        print_json(result.to_dict())
        return
    from rich.table import Table

    cur = prices.currency
    table = Table(title=f"Estimated cost over the last {since}, by {by} ({cur})", title_justify="left")
    for col in (by, "vCPU-h", "GPU-h", "compute", "stored", "storage", "requests", "CPU s/1k req", "serving",
                "total"):
        table.add_column(col, justify="left" if col == by else "right")
    for r in result.rows:
        per_k = r.cpu_s_per_1k_requests
        table.add_row(r.name, f"{r.vcpu_hours:.2f}", f"{r.gpu_hours:.2f}", _money(r.compute),
                      size(r.storage_bytes), _money(r.storage), str(r.requests),
                      "—" if per_k is None else f"{per_k:.3f}", _money(r.serving), _money(r.total))
    out = console()
    out.print(table)
    if result.unmeasured_attempts:
        out.print(f"{result.unmeasured_attempts} step run(s) had no resource measures and count their duration "
                  "on one core.", highlight=False)
    if by == "tag":
        out.print("A run or endpoint with several tags counts under each: tag rows do not add up.", highlight=False)
    out.print(result.note, highlight=False)
