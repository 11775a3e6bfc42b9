"""``conveyor artifacts show|get`` and ``conveyor lineage``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json, when

app = typer.Typer(no_args_is_help=True)


def _client():  # noqa: ANN202
    from conveyor.runtime.client import Client

    return Client()


@app.command("show")
def show(artifact_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Describe an artifact: type, format, hash, size, where it lives and who made it."""
    client = _client()
    a = client.metadata.artifacts.get(artifact_id)
    data = {"id": a.id, "name": a.name, "type": a.type_name, "materializer": f"{a.materializer}@{a.materializer_version}",
            "content_hash": a.content_hash, "size": a.size, "uri": a.uri, "inline": a.inline is not None,
            "meta": a.meta, "run_id": a.run_id, "created": when(a.created_at)}
    if as_json:
        print_json(data)
        return
    c = console()
    for k, v in data.items():
        c.print(f"[bold]{k:>13}[/] {v}", highlight=False)


@app.command("get")
def get(artifact_id: str,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Where to write it.")] = None) -> None:  # noqa: UP007
    """Export an artifact's bytes (after verifying its hash) to a file or folder."""
    client = _client()
    from conveyor.runtime.slots import stored_from_record
    from conveyor.store.artifacts.materializers.path_value import safe_name

    a = client.metadata.artifacts.get(artifact_id)
    # the default name comes from the store, so it is reduced to one plain file name in the current folder
    dest = output or Path(safe_name(f"{a.id}{_suffix(a.materializer)}"))
    written = client.artifacts.export(stored_from_record(a), dest)
    console().print(f"Wrote {written}")


app.command("export", help="Export an artifact's bytes (after verifying its hash) to a file or folder (as get).")(get)


def _suffix(materializer: str) -> str:
    return {"json": ".json", "numpy.npy": ".npy", "pandas.arrow": ".arrow", "arrow.ipc": ".arrow"}.get(materializer, "")


def _tree(client: Any, artifact_id: str, direction: str, depth: int, seen: set[str]) -> dict[str, Any]:
    """Walk producers (up) or consumers (down) of an artifact."""
    a = client.metadata.artifacts.get(artifact_id)
    node: dict[str, Any] = {"artifact": a.id, "name": a.name, "type": (a.type_name or "").rsplit(".", 1)[-1],
                            "steps": []}
    if depth <= 0 or a.id in seen:
        return node
    seen = seen | {a.id}
    want = "output" if direction == "up" else "input"
    for edge in client.metadata.artifacts.edges(a.id):
        if edge.direction != want:
            continue
        step: dict[str, Any] = {"step": edge.step_name, "step_run": edge.step_run_id, "run": edge.run_id,
                                "artifacts": []}
        other = "input" if direction == "up" else "output"
        for e in client.metadata.artifacts.step_edges(edge.step_run_id):
            if e.direction == other:
                step["artifacts"].append(_tree(client, e.artifact_id, direction, depth - 1, seen))
        node["steps"].append(step)
    return node


def _render(parent: Any, node: dict[str, Any], verb: str) -> None:
    for step in node["steps"]:
        branch = parent.add(f"{verb} [bold]{step['step']}[/] (run {step['run']})")
        for child in step["artifacts"]:
            sub = branch.add(f"[cyan]{child['artifact']}[/] {child['name'] or ''} {child['type']}")
            _render(sub, child, verb)


def lineage(artifact_id: str, depth: Annotated[int, typer.Option(help="How many steps to walk each way.")] = 10,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show where an artifact came from (upstream) and what used it (downstream)."""
    client = _client()
    up = _tree(client, artifact_id, "up", depth, set())
    down = _tree(client, artifact_id, "down", depth, set())
    if as_json:
        print_json({"artifact": up["artifact"], "upstream": up["steps"], "downstream": down["steps"]})
        return
    from rich.tree import Tree

    root = Tree(f"[bold cyan]{up['artifact']}[/] {up['name'] or ''} {up['type']}")
    _render(root.add("[bold]upstream[/]"), up, "made by")
    _render(root.add("[bold]downstream[/]"), down, "used by")
    console().print(root)
