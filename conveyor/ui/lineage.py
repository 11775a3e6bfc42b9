"""Lineage both ways: artifact or dataset → steps → model versions → endpoints, and back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from conveyor.store.metadata import tables as t
from conveyor.ui.runs import iso

MAX_DEPTH = 10


def _walk(md: Any, artifact_id: str, direction: str, depth: int, seen: set[str], found: set[str]) -> dict[str, Any]:
    """Producers (``up``) or consumers (``down``) of an artifact, ``depth`` steps away at most."""
    a = md.artifacts.get(artifact_id)
    found.add(a.id)
    node: dict[str, Any] = {"artifact": a.id, "name": a.name, "type": (a.type_name or "").rsplit(".", 1)[-1],
                            "steps": []}
    if depth <= 0 or a.id in seen:
        return node
    seen = seen | {a.id}
    want, other = ("output", "input") if direction == "up" else ("input", "output")
    for edge in md.artifacts.edges(a.id):
        if edge.direction != want:
            continue
        node["steps"].append({
            "step": edge.step_name, "step_run": edge.step_run_id, "run": edge.run_id,
            "artifacts": [_walk(md, e.artifact_id, direction, depth - 1, seen, found)
                          for e in md.artifacts.step_edges(edge.step_run_id) if e.direction == other]})
    return node


def _versions_of(md: Any, artifact_ids: set[str]) -> list[Any]:
    if not artifact_ids:
        return []
    mv = t.model_versions
    with md.runs.read() as conn:
        rows = conn.execute(select(mv.c.model, mv.c.version).where(mv.c.artifact_id.in_(list(artifact_ids)))).all()
    return [md.models.version(r.model, r.version) for r in rows]


def _served(registry: Any, versions: list[Any]) -> list[dict[str, Any]]:
    return [{"model": v.model, "version": v.version, "approval": v.approval, "aliases": list(v.aliases),
             "endpoints": [{"endpoint": e, "how": how, "ref": ref} for e, how, ref in registry.endpoints_using(v)]}
            for v in versions if v is not None]


def artifact_lineage(client: Any, artifact_id: str, depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Where an artifact came from, what used it, and the model versions and endpoints downstream."""
    md = client.metadata
    down_ids: set[str] = set()
    up = _walk(md, artifact_id, "up", depth, set(), set())
    down = _walk(md, artifact_id, "down", depth, set(), down_ids)
    return {"artifact": up["artifact"], "name": up["name"], "type": up["type"], "upstream": up["steps"],
            "downstream": down["steps"], "models": _served(client.registry, _versions_of(md, down_ids))}


def dataset_lineage(client: Any, name: str, version: int) -> dict[str, Any]:
    """A dataset version: the runs that made and read it, and the models and endpoints downstream."""
    from conveyor.errors import NotFound

    md = client.metadata
    rec = md.datasets.version(name, version)
    if rec is None:
        raise NotFound(f"Dataset '{name}' has no version {version}. See `conveyor datasets list`.")
    data = artifact_lineage(client, rec.artifact_id)
    data["dataset"] = {"name": name, "version": version, "content_hash": rec.content_hash}
    data["uses"] = [{"role": u.role, "run": u.run_id, "step_run": u.step_run_id, "at": iso(u.at)}
                    for u in md.datasets.usage(name, version)]
    readers = {u.run_id for u in md.datasets.usage(name, version) if u.role == "read" and u.run_id}
    if readers:
        mv = t.model_versions
        with md.runs.read() as conn:
            rows = conn.execute(select(mv.c.model, mv.c.version).where(mv.c.run_id.in_(list(readers)))).all()
        seen = {(m["model"], m["version"]) for m in data["models"]}
        data["models"] += [m for m in _served(client.registry, [md.models.version(r.model, r.version) for r in rows])
                           if (m["model"], m["version"]) not in seen]
    return data


def model_lineage(client: Any, name: str, version: int) -> dict[str, Any]:
    """A model version back to its run, steps, inputs and datasets, and forward to its endpoints."""
    reg = client.registry
    lin = reg.lineage(f"{name}:{version}")
    v = lin.version
    datasets = []
    if lin.run:
        datasets = [{"dataset": u.dataset, "version": u.version, "role": u.role}
                    for u in client.metadata.datasets.read_by_run(lin.run["id"])]
    return {"model": v.model, "version": v.version, "artifact": v.artifact_id, "approval": v.approval,
            "run": lin.run, "steps": lin.steps, "inputs": lin.inputs, "environment": lin.environment,
            "datasets": datasets, "endpoints": _served(reg, [v])[0]["endpoints"]}
