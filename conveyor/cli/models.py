"""``conveyor models`` and ``conveyor audit``: the registry from the shell."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json, when

app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CommentOpt = Annotated[Optional[str], typer.Option("--comment", "-m", help="Why.")]  # noqa: UP007


def _registry() -> Any:
    from conveyor.runtime.client import Client

    return Client().registry


def version_dict(v: Any) -> dict[str, Any]:
    from conveyor.runtime.run import iso

    return {"model": v.model, "version": v.version, "aliases": list(v.aliases), "approval": v.approval,
            "metrics": v.metrics, "tags": v.tags, "signature": v.signature, "artifact_id": v.artifact_id,
            "run_id": v.run_id, "created": iso(v.created_at), "created_by": v.created_by}


@app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """Registered models with their latest version and aliases."""
    models = _registry().list_models()
    if as_json:
        print_json(models)
        return
    from rich.table import Table

    t = Table(title=f"{len(models)} models", title_justify="left")
    for col in ("model", "versions", "latest", "aliases", "protected"):
        t.add_column(col)
    for m in models:
        t.add_row(m["name"], str(m["versions"]), str(m["latest"]),
                  ", ".join(f"{a}→{v}" for a, v in sorted(m["aliases"].items())), ", ".join(m["protected_aliases"]))
    console().print(t)


@app.command("show")
def show(ref: str, as_json: JsonOpt = False,
         run: Annotated[Optional[str], typer.Option(  # noqa: UP007
             "--run", help="Only the versions this run registered (or its cached steps did when they ran).")] = None,
         ) -> None:
    """A model's versions (or one version with NAME:VERSION / NAME@ALIAS)."""
    reg = _registry()
    from conveyor.registry import parse_ref

    parsed = parse_ref(ref)
    one = bool(parsed.version or parsed.alias)
    if run is not None:
        if one:
            from conveyor.errors import InvalidRequest

            raise InvalidRequest(f"--run lists a model's versions: give the model name ({parsed.name}), not {ref}.")
        versions = reg.produced_by(parsed.name, run)
    else:
        versions = [reg.resolve(parsed)] if one else reg.versions(parsed.name)
    if as_json:
        print_json([version_dict(v) for v in versions] if len(versions) != 1 or not one
                   else version_dict(versions[0]))
        return
    from rich.table import Table

    t = Table(title=f"model {parsed.name}", title_justify="left")
    for col in ("version", "aliases", "approval", "metrics", "run", "created", "by"):
        t.add_column(col)
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())[:4])
        t.add_row(str(v.version), ", ".join(v.aliases), v.approval, metrics, v.run_id or "", when(v.created_at),
                  v.created_by or "")
    console().print(t)


@app.command("alias")
def alias(ref: Annotated[str, typer.Argument(help="NAME:VERSION to point the alias at")],
          name: Annotated[str, typer.Argument(help="alias, e.g. production")],
          remove: Annotated[bool, typer.Option("--remove", help="Delete the alias instead.")] = False) -> None:
    """Point an alias at a version (protected aliases need an approved version)."""
    reg = _registry()
    from conveyor.registry import parse_ref

    parsed = parse_ref(ref)
    if remove:
        reg.remove_alias(parsed.name, name)
        console().print(f"Removed alias {parsed.name}@{name}.")
        return
    target = reg.resolve(parsed)
    before = reg.set_alias(target.model, name, target.version)
    console().print(f"{target.model}@{name}: {before if before is not None else '—'} → {target.version}")


@app.command("approve")
def approve(ref: str, comment: CommentOpt = None) -> None:
    """Approve a version (needs the approver role)."""
    v = _registry().approve(ref, comment)
    console().print(f"Approved {v.model}:{v.version}.")


@app.command("gate")
def gate(ref: str,
         minimum: Annotated[list[str], typer.Option("--min", help="METRIC=NUMBER the version must reach (repeatable).")] = [],  # noqa: B006
         maximum: Annotated[list[str], typer.Option("--max", help="METRIC=NUMBER the version must not exceed (repeatable).")] = [],  # noqa: B006
         as_json: JsonOpt = False) -> None:
    """Check a version's metrics against bounds; exits 3 naming what fell short (a CI gate before approval)."""
    from conveyor.errors import QualityGateFailed
    from conveyor.registry.gates import check_metrics, parse_bounds

    v = _registry().resolve(ref)
    results = check_metrics(v.metrics, parse_bounds(minimum, "--min"), parse_bounds(maximum, "--max"))
    failed = [r for r in results if not r.passed]
    if as_json:
        print_json({"model": v.model, "version": v.version, "passed": not failed,
                    "checks": [{"metric": r.metric, "bound": r.bound, "threshold": r.threshold, "value": r.value,
                                "passed": r.passed} for r in results]})
    else:
        for r in results:
            mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
            sign = ">=" if r.bound == "min" else "<="
            console().print(f"{mark} {r.metric} = {'missing' if r.value is None else r.value} (needs {sign} {r.threshold})")
    if failed:
        detail = "; ".join(f"{r.metric} is missing" if r.value is None else
                           f"{r.metric} = {r.value} {'<' if r.bound == 'min' else '>'} {r.threshold}" for r in failed)
        known = ", ".join(sorted(v.metrics)) or "none"
        raise QualityGateFailed(f"{v.model}:{v.version} does not pass the gate: {detail}. Its metrics: {known}. "
                                "Train a better version, or change the bounds if they are wrong.")


@app.command("reject")
def reject(ref: str, comment: CommentOpt = None) -> None:
    """Reject a version (needs the approver role)."""
    v = _registry().reject(ref, comment)
    console().print(f"Rejected {v.model}:{v.version}.")


@app.command("rollback")
def rollback(name: str, alias: Annotated[str, typer.Option(help="Alias to move back.")] = "production") -> None:
    """Move an alias back to the version it held before its last move."""
    old, new = _registry().rollback(name, alias)
    console().print(f"{name}@{alias}: {old} → {new} (rolled back)")


@app.command("lineage")
def lineage(ref: str, as_json: JsonOpt = False) -> None:
    """Where a version came from: run, steps, input data hashes, code version, environment."""
    lin = _registry().lineage(ref)
    data = {"version": version_dict(lin.version), "run": lin.run, "steps": lin.steps, "inputs": lin.inputs,
            "environment": lin.environment}
    if as_json:
        print_json(data)
        return
    from rich.tree import Tree

    v = lin.version
    root = Tree(f"[bold]{v.model}:{v.version}[/] {', '.join(v.aliases)} ({v.approval})")
    if lin.run:
        r = lin.run
        run_node = root.add(f"run {r['id']} · {r['pipeline']} · {r['status']} · params {r['parameters']}")
        pv = r.get("pipeline_version")
        if pv:
            run_node.add(f"pipeline version {pv['version']} (code {pv['code_hash'][:12]})")
        run_node.add(f"git {r['git_commit'][:12] if r['git_commit'] else '—'}{' dirty' if r['git_dirty'] else ''}")
        steps = run_node.add("steps")
        for s in lin.steps:
            steps.add(f"{s['name']} {s['status']}{' (cached)' if s['cache_hit'] else ''}")
        ins = run_node.add("inputs")
        for i in lin.inputs:
            ins.add(f"{i['step']}.{i['input']} ← {i['artifact']} {i['content_hash'][:19]}")
    env = lin.environment
    if env:
        root.add(f"environment: Python {env.get('python')} on {env.get('platform')}, {env.get('packages', 0)} packages")
    console().print(root)


@app.command("delete")
def delete(ref: str, yes: Annotated[bool, typer.Option("--yes", "-y")] = False) -> None:
    """Delete a version (kept for lineage and audit; it no longer resolves)."""
    if not yes and not typer.confirm(f"Delete {ref}?"):
        raise typer.Abort()
    v = _registry().delete(ref)
    console().print(f"Deleted {v.model}:{v.version}.")


@app.command("grant")
def grant(actor: str, role: Annotated[str, typer.Option(help="approver or admin")] = "approver") -> None:
    """Give an actor a role (admin role; the first admin is named by `conveyor init --admin NAME`)."""
    _registry().grant(actor, role)
    console().print(f"Granted {role} to {actor}.")


@app.command("revoke")
def revoke(actor: str, role: Annotated[str, typer.Option(help="approver or admin")] = "approver") -> None:
    """Take a role away from an actor (admin role; the last admin stays)."""
    _registry().revoke(actor, role)
    console().print(f"Revoked {role} from {actor}.")


@app.command("roles")
def roles(as_json: JsonOpt = False) -> None:
    """Who holds which role in this store."""
    grants = _registry().role_grants()
    if as_json:
        print_json([{"actor": a, "role": r} for a, r in grants])
        return
    for a, r in grants:
        console().print(f"{a}  {r}")
    if not grants:
        console().print("No roles yet. Name the first admin with `conveyor init --admin NAME`.")


@app.command("protect")
def protect(name: str, aliases: Annotated[list[str], typer.Argument(help="aliases that need approval")]) -> None:
    """Set which aliases of a model need an approved version (admin role)."""
    _registry().set_protected(name, aliases)
    console().print(f"Protected aliases of {name}: {', '.join(aliases)}")


def audit(model: Annotated[Optional[str], typer.Option(help="Only this model.")] = None,  # noqa: UP007
          limit: int = 50, as_json: JsonOpt = False) -> None:
    """Every registry action, newest first: who, when, what changed."""
    entries = _registry().audit(model, limit)
    if as_json:
        from conveyor.runtime.run import iso

        print_json([{"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "model": e.model,
                     "version": e.version, "alias": e.alias, "before": e.before, "after": e.after,
                     "detail": e.detail} for e in entries])
        return
    from rich.table import Table

    t = Table(title="Audit log", title_justify="left")
    for col in ("when", "actor", "action", "model", "version", "alias", "before → after"):
        t.add_column(col)
    for e in entries:
        t.add_row(when(e.at), e.actor, e.action, e.model or "", str(e.version or ""), e.alias or "",
                  f"{e.before} → {e.after}" if e.before or e.after else (e.detail or ""))
    console().print(t)
