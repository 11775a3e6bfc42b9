"""Importing a run that tasks recorded beside their outputs: it becomes a run like any other.

``conveyor runs import RUN_ID --from ROOT`` reads ``<ROOT>/runs/<RUN_ID>/`` (see
``runtime.records``), writes the run, its step runs, artifacts, lineage, metrics, parameters and
logs into this store, and copies the artifact bytes this store's root lacks (hash-verified).
Importing twice adds nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.errors import NotFound
from conveyor.registry.pending import pending, register_pending
from conveyor.runtime.records import RunRecords, step_from_doc
from conveyor.store.metadata.records import NewArtifact, StepOutcome


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote."""

    run_id: str
    status: str
    steps: int
    skipped_existing: int
    copied: int
    models: tuple[str, ...] = ()   # the model versions registered from the run's tasks ("name:3")


def import_run(client: Any, run_id: str, source_root: str, *, copy: bool = True) -> ImportReport:
    """Bring run ``run_id`` recorded under ``source_root`` into ``client``'s stores."""
    from conveyor.runtime.worker import artifact_store

    src = artifact_store(source_root, client.settings.inline_max_bytes)
    records = RunRecords(src)
    run = records.run(run_id)
    if run is None:
        raise NotFound(f"No run {run_id} under {source_root}/runs/. Check the run id (the orchestrator's execution "
                       "id the tasks were given) and the artifact root the tasks wrote to.")
    docs = sorted(records.steps(run_id), key=lambda d: (d.get("started_at") or 0, d.get("ended_at") or 0))
    registrations = pending(src, run_id)
    md = client.metadata
    status = _status(docs)
    try:
        md.runs.get(run_id)
    except NotFound:
        pid, _ = md.runs.ensure_pipeline(run["pipeline"], "imported", run.get("pipeline_ref"))
        md.runs.create(kind="pipeline", pipeline_id=pid, pipeline_name=run["pipeline"],
                       pipeline_ref=run.get("pipeline_ref"), parameters=run.get("parameters") or {},
                       tags={"imported_from": source_root}, options={"cache": True, "executor": "export"},
                       run_id=run_id)
    dst = client.artifacts
    added = 0
    copied = _copy_bytes(src, dst, docs, registrations) if copy else 0
    for d in docs:
        if d.get("status") in ("running", "pending"):
            continue
        outputs = d.get("outputs") or {}
        here = md.steps.existing_artifacts([a["id"] for a in outputs.values()])
        new, reused = [], []
        for name, a in outputs.items():
            if a["id"] in here:
                reused.append((name, a["id"]))
                continue
            new.append(NewArtifact(name=name, content_hash=a["content_hash"], materializer=a["materializer"],
                                   materializer_version=a["materializer_version"], type_name=a.get("type_name"),
                                   size=a.get("size"), uri=_uri_here(dst, a, copy),
                                   inline=a.get("inline"), meta=a.get("meta") or {}, id=a["id"]))
        inputs = [(n, aid, pos) for n, aid, pos in d.get("inputs") or []]
        known = md.steps.existing_artifacts([aid for _n, aid, _p in inputs]) | {a.id for a in new}
        outcome = StepOutcome(
            status=d["status"], attempts=d.get("attempts", 0), cache_hit=bool(d.get("cache_hit")),
            cached_from=d.get("cached_from"), error=d.get("error"), traceback=d.get("traceback"), logs=d.get("logs"),
            reason=d.get("reason"), new_outputs=new, reused_outputs=reused,
            inputs=[i for i in inputs if i[1] in known],
            metrics=[tuple(m) for m in d.get("metrics") or []], params=[tuple(p) for p in d.get("params") or []],
            started_at=d.get("started_at"), ended_at=d.get("ended_at"),
            attempt_rows=[dict(a) for a in d.get("attempts_used") or []], preemptions=d.get("preemptions"))
        if md.steps.adopt(step_from_doc(d), outcome, code_hash=d.get("code_hash"), cache_parts=d.get("cache_parts")):
            added += 1
    models = _register(md, dst, docs, registrations, copy)
    if md.runs.get(run_id).status != status:
        md.runs.set_status(run_id, status, error=next((f"Step '{d['name']}' failed: {d.get('error')}" for d in docs
                                                       if d.get("status") == "failed"), None))
    return ImportReport(run_id, status, added, len(docs) - added, copied, models)


def _register(md: Any, dst: Any, docs: list[dict[str, Any]], registrations: list[dict[str, Any]],
              copied: bool) -> tuple[str, ...]:
    """Register the models the run's tasks registered, once each; a registration whose step run
    never finished (its task was lost and retried) is left out, as its record is."""
    finished = {d["id"] for d in docs if d.get("status") not in ("running", "pending")}

    def new_artifact(a: dict[str, Any]) -> NewArtifact:
        return NewArtifact(name=a["name"], content_hash=a["content_hash"], materializer=a["materializer"],
                           materializer_version=a["materializer_version"], type_name=a.get("type_name"),
                           size=a.get("size"), uri=_uri_here(dst, a, copied), inline=a.get("inline"),
                           meta=a.get("meta") or {}, id=a["id"])

    done = []
    for doc in registrations:
        if doc["step_run_id"] in finished:
            version = register_pending(md, doc, new_artifact)
            if version is not None:
                done.append(f"{version.model}:{version.version}")
    return tuple(done)


def _status(docs: list[dict[str, Any]]) -> str:
    statuses = {d.get("status") for d in docs}
    if "failed" in statuses:
        return "failed"
    if statuses & {"running", "pending"} or not docs:
        return "running"
    return "succeeded"


def _stored(a: dict[str, Any]) -> Any:
    from conveyor.store.artifacts import StoredArtifact

    return StoredArtifact(content_hash=a["content_hash"], materializer=a["materializer"],
                          materializer_version=a["materializer_version"], type_name=a.get("type_name") or "",
                          size=a.get("size") or 0, uri=a.get("uri"), inline=a.get("inline"), meta=a.get("meta") or {})


def _uri_here(dst: Any, a: dict[str, Any], copied: bool) -> str | None:
    return dst.relocated(_stored(a)).uri if copied else a.get("uri")


def _copy_bytes(src: Any, dst: Any, docs: list[dict[str, Any]], registrations: list[dict[str, Any]]) -> int:
    """Stream every object the run's records name into ``dst`` (hash-verified, resumable); how many were copied."""
    from conveyor.store.artifacts.transfer import transfer

    if src.root == dst.root:
        return 0
    named = [a for d in docs for a in (d.get("outputs") or {}).values()]
    named += [a for r in registrations for a in (r["artifact"], r.get("profile")) if a]
    items = [_stored(a) for a in named if a.get("uri")]
    return transfer(src, dst, items).copied
