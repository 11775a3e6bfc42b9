"""Registrations made by a task that reaches no database: written beside its records, registered on import.

A step that calls ``cv.register_model`` in an exported task without ``CONVEYOR_METADATA_URL``
stores the model (and its reference profile) in the artifact root as usual, and writes what the
registry needs as one document:

    <root>/runs/<run_id>/registrations/<id>.json

``conveyor runs import`` registers each of them, once, as the next version of its model, linked
to the step run that made it, exactly as the same call would have registered it with a database.
Until then the version has no number: the record returned in the task says ``version=0``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from conveyor.registry.refs import check_name
from conveyor.runtime.records import FORMAT, artifact_doc
from conveyor.store.metadata.models import VersionRecord
from conveyor.store.metadata.records import NewArtifact


def registrations_prefix(run_id: str) -> str:
    return f"runs/{run_id}/registrations"


def write_pending(step: Any, name: str, model: Any, *, metrics: dict[str, float] | None, tags: dict[str, Any] | None,
                  signature: dict[str, Any] | None, data: Any, target: Any) -> VersionRecord:
    """Store ``model`` under the step's artifact root and leave its registration for the import."""
    from conveyor.registry.registry import ModelRegistry
    from conveyor.runtime.worker import artifact_store

    check_name(name)
    clean = {k: float(v) for k, v in (metrics or {}).items()}   # a bad metric fails here, before any write
    artifacts = artifact_store(step.artifact_root, 65536)
    profile = ModelRegistry._profile(model, data, target) if data is not None else None
    if signature is None and data is not None:
        from conveyor.registry.signature import infer_signature

        signature = infer_signature(model, data)
    model_art = _new_artifact(artifacts.put(model), f"model/{name}")
    profile_art = _new_artifact(artifacts.put(profile), f"profile/{name}") if profile is not None else None
    rid = uuid.uuid4().hex[:16]
    doc = {"format": FORMAT, "id": rid, "model": name, "run_id": step.run_id, "node": step.node_name,
           "step_run_id": step.step_run_id, "actor": step.actor, "created_at": time.time(),
           "metrics": clean, "tags": dict(tags or {}), "signature": signature,
           "artifact": artifact_doc(model_art), "profile": artifact_doc(profile_art) if profile_art else None}
    artifacts.write_document(f"{registrations_prefix(step.run_id)}/{rid}.json", orjson.dumps(doc))
    return VersionRecord(id=rid, model=name, version=0, artifact_id=model_art.id, run_id=step.run_id,
                         step_run_id=step.step_run_id, metrics=clean, tags=doc["tags"], signature=signature,
                         profile_artifact_id=profile_art.id if profile_art else None, approval="pending",
                         created_at=doc["created_at"], created_by=step.actor)


def _new_artifact(stored: Any, label: str) -> NewArtifact:
    return NewArtifact(name=label, content_hash=stored.content_hash, materializer=stored.materializer,
                       materializer_version=stored.materializer_version, type_name=stored.type_name,
                       size=stored.size, uri=stored.uri, inline=stored.inline, meta=stored.meta)


def pending(artifacts: Any, run_id: str) -> list[dict[str, Any]]:
    """The registration documents of a run, oldest first."""
    docs = []
    for path in artifacts.list_documents(registrations_prefix(run_id)):
        data = artifacts.read_document(path)
        if data is not None:
            docs.append(orjson.loads(data))
    return sorted(docs, key=lambda d: (d.get("created_at") or 0, d["id"]))


def register_pending(metadata: Any, doc: dict[str, Any], new_artifact: Any) -> VersionRecord | None:
    """Register one document's model version in ``metadata``; None when it is already there.

    ``new_artifact(doc)`` turns an artifact document into the ``NewArtifact`` this store records
    (with its URI under this store's root). The artifacts become outputs of the step run that
    registered them, as a registration with a database makes them.
    """
    from conveyor.registry.registry import DEFAULT_PROTECTED

    name, model_id = doc["model"], doc["artifact"]["id"]
    if metadata.models.model(name) is not None and any(
            v.artifact_id == model_id for v in metadata.models.versions(name, include_deleted=True)):
        return None
    docs = [doc["artifact"]] + ([doc["profile"]] if doc.get("profile") else [])
    here = metadata.steps.existing_artifacts([a["id"] for a in docs])
    arts = [new_artifact(a) for a in docs if a["id"] not in here]
    if arts:
        metadata.steps.add_outputs(doc["step_run_id"], doc["run_id"], arts)
    return metadata.models.add_version(
        name, artifact_id=model_id, actor=doc.get("actor") or "unknown", run_id=doc["run_id"],
        step_run_id=doc["step_run_id"], metrics=doc.get("metrics") or {}, tags=doc.get("tags") or {},
        signature=doc.get("signature"), profile_artifact_id=doc["profile"]["id"] if doc.get("profile") else None,
        default_protected=list(DEFAULT_PROTECTED))
