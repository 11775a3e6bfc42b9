"""Argo's own check of an export: hera's models load the Workflow and keep every key, every name resolves.

``validate(result)`` runs this file in a venv with hera (pinned) as a script on the written YAML.
The script loads it into ``hera.workflows.models.Workflow`` (or ``WorkflowTemplate``), the pydantic
models generated from Argo's own OpenAPI schema, and compares the model's dump with the input:
pydantic ignores unknown keys, so a misspelt or misplaced field shows as a key that did not survive.
It then checks what Argo's controller would resolve at run time: the entry template, each DAG
task's template, every task named in ``depends``, ``when`` and ``withParam`` (an ancestor, with the
output parameter declared), every ``{{inputs.parameters.*}}`` and ``{{workflow.parameters.*}}``,
DNS-1123 names, no cycle. It prints what it parsed as JSON, on which ``validate`` asserts against
the plan. Then node checks the same document against Argo's published schema (types, required
fields), as compiled by the npm package @kubernetes-models/argo-workflows (``argo_schema.mjs``).

The script part imports only the standard library, PyYAML and hera (the venv's).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERA = ["hera[yaml]==7.1.0"]   # the range of the `argo` extra in pyproject.toml includes it
SCHEMA_PACKAGE = "@kubernetes-models/argo-workflows@2.0.0"   # Argo's schema, compiled to validators
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
OPERAND = re.compile(r"([A-Za-z0-9][-A-Za-z0-9]*)\.(Succeeded|Failed|Errored|Skipped|Omitted|Daemoned|AnySucceeded"
                     r"|AllFailed)")
TASK_OUTPUT = re.compile(r"\{\{tasks\.([^.}]+)\.outputs\.parameters\.([^}]+)\}\}")
PLACEHOLDER = re.compile(r"\{\{([^}]*)\}\}")


# --- in the test process -------------------------------------------------------------------------

def hera_venv() -> Path:
    """The cached venv with hera (made on first use)."""
    from tests.export.venvs import target_venv

    return target_venv("hera", HERA)


def check_file(path: Path) -> dict[str, Any]:
    """Run the check in hera's venv on one file; return what it parsed, or fail with its output."""
    (found,) = check_files([path])
    if isinstance(found, str):
        raise AssertionError(f"hera's check rejected {path}: {found}")
    return found


def check_files(paths: list[Path]) -> list[dict[str, Any] | str]:
    """Check several files in one run of hera's venv: each one's summary, or the text of why it failed."""
    from tests.export.venvs import run_in

    done = run_in(hera_venv(), [__file__, *map(str, paths)], timeout=300)
    assert done.returncode == 0, f"the check could not run on {paths}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return [r.get("parsed", r.get("error")) for r in json.loads(done.stdout)]


def schema_package() -> Path:
    """The npm package with Argo's schema, under .cache/npm (installed once)."""
    from tests.export.venvs import ROOT
    from tests.npm import npm_package

    folder = npm_package(ROOT / ".cache" / "npm" / "argo-workflows", SCHEMA_PACKAGE)
    return folder / "node_modules" / "@kubernetes-models" / "argo-workflows"


def schema_errors(documents: list[dict[str, Any]]) -> list[str | None]:
    """Each document checked against Argo's schema by node: None when valid, else the schema's errors.

    The schema checks types and required fields; it allows unknown keys, which hera's check catches.
    """
    script = Path(__file__).with_name("argo_schema.mjs")
    done = subprocess.run(["node", str(script), str(schema_package())], input=json.dumps(documents),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the schema check could not run:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def validate(result: Any) -> None:
    """The conformance suite's hook: hera and Argo's schema accept it; every plan task is there as planned."""
    from conveyor.export.argo import task_names

    path = next(f for f in result.files if f.name in ("workflow.yaml", "workflowtemplate.yaml"))
    parsed = check_file(path)
    (errors,) = schema_errors([parsed["document"]])
    assert errors is None, f"Argo's schema rejects {path}: {errors}"
    plan = result.plan
    names = task_names(plan)
    tasks = parsed["tasks"]
    assert set(tasks) == set(names.values()), f"tasks {sorted(tasks)} != plan {sorted(names.values())}"
    for t in plan:
        got = tasks[names[t.name]]
        assert sorted(got["upstream"]) == sorted(names[u] for u in t.upstream), (t.name, got)
        assert sorted(got["gates"]) == sorted([names[g.decider], g.output] for g in t.gates), (t.name, got)
        if t.fan_out is None:
            assert got["loop"] is None, (t.name, got)
        elif t.fan_out.source is not None:
            assert got["loop"] == ["withParam", names[t.fan_out.source], t.fan_out.output], (t.name, got)
        else:
            assert got["loop"] == ["withItems", list(t.fan_out.static or ())], (t.name, got)
        assert got["retries"] == (t.retries or None), (t.name, got)
        assert got["node"] == t.name, (t.name, got)
    assert [p["name"] for p in parsed["parameters"]] == [*(p.name for p in plan.params), "conveyor_resume_from"]


# --- in hera's venv ------------------------------------------------------------------------------

def lost_keys(given: Any, dumped: Any, path: str = "") -> list[str]:
    """Where ``dumped`` (the model's) lacks or changed what ``given`` (the file's) has."""
    if isinstance(given, dict):
        if not isinstance(dumped, dict):
            return [f"{path or '/'}: became {type(dumped).__name__}"]
        out = []
        for k, v in given.items():
            if k not in dumped:
                out.append(f"{path}/{k}: unknown to the model, dropped")
            else:
                out += lost_keys(v, dumped[k], f"{path}/{k}")
        return out
    if isinstance(given, list):
        if not isinstance(dumped, list) or len(dumped) != len(given):
            return [f"{path}: list changed"]
        return [p for i, (a, b) in enumerate(zip(given, dumped)) for p in lost_keys(a, b, f"{path}[{i}]")]
    return [] if given == dumped else [f"{path}: {given!r} became {dumped!r}"]


def check(doc: dict[str, Any]) -> dict[str, Any]:
    """Load ``doc`` into hera's model, compare, resolve every name; return the parsed summary."""
    from hera.workflows import models

    kind = doc.get("kind")
    model = {"Workflow": models.Workflow, "WorkflowTemplate": models.WorkflowTemplate}.get(kind)
    assert model is not None, f"kind {kind!r} is neither Workflow nor WorkflowTemplate"
    loaded = model.model_validate(doc)
    lost = lost_keys(doc, loaded.model_dump(by_alias=True, exclude_none=True, mode="json"))
    assert not lost, "keys hera's model does not keep:\n" + "\n".join(lost)
    assert doc.get("apiVersion") == "argoproj.io/v1alpha1", doc.get("apiVersion")

    spec = loaded.spec
    templates = {t.name: t for t in spec.templates or []}
    assert len(templates) == len(spec.templates or []), "two templates share a name"
    for name in templates:
        assert DNS_LABEL.fullmatch(name) and len(name) <= 63, f"template name {name!r} is not a DNS-1123 label"
    assert spec.entrypoint in templates, f"entrypoint {spec.entrypoint!r} is not a template"
    dag = templates[spec.entrypoint].dag
    assert dag is not None and dag.tasks, f"entry template {spec.entrypoint!r} has no DAG tasks"
    workflow_params = {p.name for p in (spec.arguments.parameters if spec.arguments else None) or []}

    tasks = {t.name: t for t in dag.tasks}
    assert len(tasks) == len(dag.tasks), "two DAG tasks share a name"
    upstream: dict[str, list[str]] = {}
    for t in dag.tasks:
        assert DNS_LABEL.fullmatch(t.name), f"task name {t.name!r} is not a DNS-1123 label"
        assert t.dependencies is None, f"task {t.name}: plain `dependencies` runs after a Skipped task; use depends"
        assert t.template in templates, f"task {t.name}: template {t.template!r} does not exist"
        deps = [m.group(1) for m in OPERAND.finditer(t.depends or "")]
        rest = OPERAND.sub("x", t.depends or "")
        assert re.fullmatch(r"[x()&|! ]*", rest), f"task {t.name}: depends {t.depends!r} has a bare operand"
        for d in deps:
            assert d in tasks, f"task {t.name}: depends names {d!r}, which is not a task"
        upstream[t.name] = sorted(set(deps))
    ancestors = _ancestors(upstream)

    summary: dict[str, Any] = {}
    for t in dag.tasks:
        tmpl = templates[t.template]
        assert tmpl.container is not None, f"template {tmpl.name}: no container"
        gates = []
        for ref, out in TASK_OUTPUT.findall(t.when or ""):
            assert ref in ancestors[t.name], f"task {t.name}: when reads {ref!r}, which it does not wait for"
            _declares(templates[tasks[ref].template], out, t.name)
            gates.append([ref, out])
        if t.when:
            stripped = TASK_OUTPUT.sub("v", t.when)
            assert re.fullmatch(r"v == true( && v == true)*", stripped), f"task {t.name}: when {t.when!r}"
        loop = None
        if t.with_param is not None:
            found = TASK_OUTPUT.fullmatch(t.with_param)
            assert found, f"task {t.name}: withParam {t.with_param!r} is not one task output"
            ref, out = found.groups()
            assert ref in ancestors[t.name], f"task {t.name}: withParam reads {ref!r}, which it does not wait for"
            _declares(templates[tasks[ref].template], out, t.name)
            loop = ["withParam", ref, out]
        elif t.with_items is not None:
            loop = ["withItems", [i.root if hasattr(i, "root") else i for i in t.with_items]]
        given = {p.name: p.value for p in (t.arguments.parameters if t.arguments else None) or []}
        inputs = {p.name for p in (tmpl.inputs.parameters if tmpl.inputs else None) or []}
        assert set(given) == inputs, f"task {t.name}: passes {sorted(given)}, template takes {sorted(inputs)}"
        if loop is not None:
            assert "{{item}}" in given.values(), f"task {t.name} loops but passes no {{{{item}}}}"
        args = [*(tmpl.container.command or []), *(tmpl.container.args or [])]
        for arg in args:
            for ph in PLACEHOLDER.findall(arg):
                scope, _, name = ph.rpartition(".")
                if scope == "inputs.parameters":
                    assert name in inputs, f"template {tmpl.name}: {{{{{ph}}}}} is not an input"
                elif scope == "workflow.parameters":
                    assert name in workflow_params, f"template {tmpl.name}: {{{{{ph}}}}} is not a workflow parameter"
                else:
                    assert ph in ("workflow.uid", "workflow.name"), f"template {tmpl.name}: unknown {{{{{ph}}}}}"
        node = args[args.index("--node") + 1]
        retry = tmpl.retry_strategy
        summary[t.name] = {"template": t.template, "node": node, "upstream": upstream[t.name], "gates": gates,
                           "loop": loop, "retries": _int(retry.limit) if retry else None,
                           "retry_policy": retry.retry_policy if retry else None}
    return {"kind": kind, "entrypoint": spec.entrypoint, "tasks": summary, "document": doc,
            "parameters": [{"name": p.name, "value": p.value, "enum": p.enum, "description": p.description}
                           for p in (spec.arguments.parameters if spec.arguments else None) or []]}


def _declares(template: Any, output: str, reader: str) -> None:
    outs = {p.name for p in (template.outputs.parameters if template.outputs else None) or []}
    assert output in outs, f"task {reader} reads output {output!r} that template {template.name} does not declare"


def _int(v: Any) -> Any:
    return getattr(v, "root", v)


def _ancestors(upstream: dict[str, list[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}

    def walk(name: str, path: tuple[str, ...]) -> set[str]:
        assert name not in path, f"the DAG has a cycle: {' -> '.join([*path, name])}"
        if name not in out:
            seen: set[str] = set()
            for up in upstream[name]:
                seen |= {up, *walk(up, (*path, name))}
            out[name] = seen
        return out[name]

    for name in upstream:
        walk(name, ())
    return out


def main(argv: list[str]) -> int:
    import yaml

    results = []
    for name in argv[1:]:
        try:
            docs = list(yaml.safe_load_all(Path(name).read_text()))
            assert len(docs) == 1, f"{name} holds {len(docs)} documents; one is expected"
            results.append({"parsed": check(docs[0])})
        except (AssertionError, ValueError) as exc:    # pydantic's ValidationError is a ValueError
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
