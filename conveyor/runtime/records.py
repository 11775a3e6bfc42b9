"""Run records beside the outputs: the metadata of tasks that reach no database.

A task an orchestrator runs may have no metadata database to write to. It then writes its step
run as one JSON document under the artifact root, where the other tasks of the run, later runs
(the cache index) and ``conveyor runs import`` read it:

    <root>/runs/<run_id>/run.json             the run: pipeline, reference, parameters
    <root>/runs/<run_id>/steps/<node>.json    one step run, with its outputs, inputs, metrics, logs
    <root>/cache/<key[:2]>/<key>.json         a cache key's outputs, for any later run

``RecordStore`` offers the engine the part of the metadata store it writes through (``steps``),
so one engine serves both. ``SharedCache`` is the cache index alone, which runs with a database
also read and write when their artifact root is shared, so that a step cached on a laptop is a
hit in the cloud and the other way round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from conveyor.errors import ArtifactError
from conveyor.store.metadata.records import ArtifactRecord, NewArtifact, StepOutcome, StepRunRecord

FORMAT = 1
log = logging.getLogger("conveyor.records")
DONE = ("succeeded", "cached", "resumed")


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex[:16]


def step_path(run_id: str, name: str) -> str:
    return f"runs/{run_id}/steps/{quote(name, safe='')}.json"


def cache_path(key: str) -> str:
    return f"cache/{key[:2]}/{key}.json"


def artifact_doc(a: NewArtifact | ArtifactRecord) -> dict[str, Any]:
    """What a record keeps of one artifact: enough to read and verify it anywhere."""
    return {"id": a.id, "name": a.name, "content_hash": a.content_hash, "materializer": a.materializer,
            "materializer_version": a.materializer_version, "type_name": a.type_name, "size": a.size,
            "uri": a.uri, "inline": a.inline, "meta": a.meta or {}}


def artifact_from_doc(d: dict[str, Any], *, run_id: str | None = None, step_run_id: str | None = None,
                      at: float = 0.0) -> ArtifactRecord:
    return ArtifactRecord(id=d["id"], content_hash=d["content_hash"], materializer=d["materializer"],
                          materializer_version=d["materializer_version"], type_name=d.get("type_name"),
                          size=d.get("size"), uri=d.get("uri"), inline=d.get("inline"), meta=d.get("meta") or {},
                          name=d.get("name"), run_id=run_id, step_run_id=step_run_id, created_at=at)


def step_from_doc(d: dict[str, Any]) -> StepRunRecord:
    return StepRunRecord(id=d["id"], run_id=d["run_id"], name=d["name"], step=d["step"], status=d["status"],
                         attempts=d.get("attempts", 0), cache_hit=bool(d.get("cache_hit")),
                         cache_key=d.get("cache_key"), started_at=d.get("started_at"), ended_at=d.get("ended_at"),
                         map_index=d.get("map_index"), cached_from=d.get("cached_from"), error=d.get("error"),
                         traceback=d.get("traceback"), reason=d.get("reason"))


class SharedCache:
    """The cache index under a shared artifact root: cache key -> the outputs of a step run.

    The index only saves work: a store that cannot be read or written right now makes a lookup a
    miss and an entry unwritten (with a warning), never a failed run.
    """

    def __init__(self, artifacts: Any) -> None:
        self.artifacts = artifacts

    def find(self, cache_key: str) -> tuple[StepRunRecord, dict[str, ArtifactRecord]] | None:
        try:
            data = self.artifacts.read_document(cache_path(cache_key))
        except ArtifactError as exc:
            log.warning("the shared cache index could not be read (%s); the step runs instead", exc)
            return None
        if data is None:
            return None
        doc = orjson.loads(data)
        record = step_from_doc(doc["step"])
        return record, {n: artifact_from_doc(a, run_id=record.run_id, step_run_id=record.id)
                        for n, a in doc["outputs"].items()}

    def add(self, cache_key: str, step: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> None:
        doc = {"format": FORMAT, "step": step, "outputs": outputs}
        try:
            self.artifacts.write_document(cache_path(cache_key), orjson.dumps(doc))
        except ArtifactError as exc:
            log.warning("the shared cache index could not be written (%s); runs elsewhere will not reuse this "
                        "step", exc)


class RecordSteps:
    """The engine's view of step runs (start, finish, record, find_cached), kept as documents."""

    def __init__(self, artifacts: Any) -> None:
        self.artifacts = artifacts
        self.cache = SharedCache(artifacts)
        self._open: dict[str, dict[str, Any]] = {}
        self._known: dict[str, dict[str, Any]] = {}    # artifact id -> document, for outputs a record reuses
        self.written: list[dict[str, Any]] = []     # the step runs this process wrote, in order

    def remember(self, outputs: dict[str, ArtifactRecord]) -> None:
        """Keep the documents of artifacts that a later record reuses by id (cache hits, resumed steps)."""
        for name, a in outputs.items():
            self._known[a.id] = {**artifact_doc(a), "name": name}

    # --- writing, as the engine does through the metadata store -------------------------------

    def start(self, run_id: str, name: str, step: str, *, cache_key: str | None, code_hash: str | None,
              map_index: int | None = None, cache_parts: dict[str, Any] | None = None, sid: str | None = None) -> str:
        sid = sid or _new_id()
        doc = {"format": FORMAT, "id": sid, "run_id": run_id, "name": name, "step": step, "map_index": map_index,
               "status": "running", "attempts": 0, "cache_key": cache_key, "code_hash": code_hash,
               "cache_parts": cache_parts, "cache_hit": False, "started_at": time.time(), "ended_at": None}
        self._open[sid] = doc
        self._write(doc)   # a task lost mid-step leaves "running", which a retried task runs again
        return sid

    def finish(self, step_run_id: str, run_id: str, outcome: StepOutcome) -> None:
        doc = self._open.pop(step_run_id)
        doc.update(status=outcome.status, attempts=outcome.attempts, cache_hit=outcome.cache_hit,
                   cached_from=outcome.cached_from, error=outcome.error, traceback=outcome.traceback,
                   logs=outcome.logs, reason=outcome.reason, ended_at=outcome.ended_at or time.time(),
                   outputs={**{name: {**self._known[aid], "name": name} for name, aid in outcome.reused_outputs
                               if aid in self._known},
                            **{a.name: artifact_doc(a) for a in outcome.new_outputs}},
                   reused=[list(p) for p in outcome.reused_outputs], inputs=[list(i) for i in outcome.inputs],
                   metrics=[list(m) for m in outcome.metrics], params=[list(p) for p in outcome.params],
                   attempts_used=[*doc.get("attempts_used", []), *(dict(row) for row in outcome.attempt_rows)],
                   preemptions=outcome.preemptions if outcome.preemptions is not None else doc.get("preemptions"))
        if outcome.started_at is not None:
            doc["started_at"] = outcome.started_at
        self._write(doc)
        if outcome.status == "succeeded" and doc.get("cache_key") and not outcome.cache_hit:
            self.cache.add(doc["cache_key"], _summary(doc), {n: a for n, a in doc["outputs"].items()
                                                              if not n.startswith("logged/")})

    def record(self, run_id: str, name: str, step: str, outcome: StepOutcome, *, cache_key: str | None = None,
               code_hash: str | None = None, map_index: int | None = None,
               cache_parts: dict[str, Any] | None = None) -> str:
        sid = _new_id()
        self._open[sid] = {"format": FORMAT, "id": sid, "run_id": run_id, "name": name, "step": step,
                           "map_index": map_index, "status": "pending", "cache_key": cache_key,
                           "code_hash": code_hash, "cache_parts": cache_parts, "started_at": time.time()}
        self.finish(sid, run_id, outcome)
        return sid

    def record_many(self, records: Any) -> None:
        """``record`` for each (run id, name, step, outcome, keywords) of cached steps found together."""
        for run_id, name, step, outcome, kw in records:
            self.record(run_id, name, step, outcome, **kw)

    def write_many(self, *, finished: Any = (), recorded: Any = (), started: Any = ()) -> None:
        """The engine's batched writes (see ``Steps.write_many``): one document each, in that order."""
        for step_run_id, run_id, outcome in finished:
            self.finish(step_run_id, run_id, outcome)
        self.record_many(recorded)
        for sid, run_id, name, step, kw in started:
            self.start(run_id, name, step, sid=sid, **kw)

    def find_cached(self, cache_key: str) -> tuple[StepRunRecord, dict[str, ArtifactRecord]] | None:
        hit = self.cache.find(cache_key)
        if hit is not None:
            self.remember(hit[1])
        return hit

    def find_cached_many(self, keys: Any = (), *, keys_of_last_run_before: str | None = None,
                         ) -> dict[str, tuple[StepRunRecord, dict[str, ArtifactRecord]]]:
        """``find_cached`` for each key (the cache index is one small document per key). A task has no
        earlier run of its own to look ahead into: ``keys_of_last_run_before`` finds nothing."""
        if keys_of_last_run_before is not None:
            return {}
        found = {}
        for key in keys:
            hit = self.find_cached(key)
            if hit is not None:
                found[key] = hit
        return found

    def add_attempts(self, step_run_id: str, run_id: str, rows: Any, *, attempts: int,
                     preemptions: int | None = None) -> None:
        """Record attempts of a step run that goes on (after a preemption), as the database does."""
        doc = self._open[step_run_id]
        doc["attempts_used"] = [*doc.get("attempts_used", []), *(dict(row) for row in rows)]
        doc["attempts"] = attempts
        if preemptions is not None:
            doc["preemptions"] = preemptions
        self._write(doc)

    def mark_unfinished(self, run_id: str, status: str, reason: str) -> None:
        for sid in list(self._open):
            doc = self._open[sid]
            self.finish(sid, run_id, StepOutcome(status=status, reason=reason, attempts=doc.get("attempts", 0)))

    def _write(self, doc: dict[str, Any]) -> None:
        self.artifacts.write_document(step_path(doc["run_id"], doc["name"]), orjson.dumps(doc))
        if doc["status"] not in ("running", "pending"):
            self.written.append(doc)


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("id", "run_id", "name", "step", "status", "attempts", "cache_key", "started_at",
                                    "ended_at", "map_index")}


class RunRecords:
    """The run-level documents: the run itself, and every step run of it."""

    def __init__(self, artifacts: Any) -> None:
        self.artifacts = artifacts

    def write_run(self, run_id: str, doc: dict[str, Any]) -> None:
        """Write ``run.json`` once (the first task of a run does; later ones find it)."""
        name = f"runs/{run_id}/run.json"
        if self.artifacts.read_document(name) is None:
            self.artifacts.write_document(name, orjson.dumps({"format": FORMAT, "id": run_id, **doc}))

    def run(self, run_id: str) -> dict[str, Any] | None:
        data = self.artifacts.read_document(f"runs/{run_id}/run.json")
        return None if data is None else orjson.loads(data)

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        """Every step-run document of the run (by node name)."""
        docs = []
        for name in self.artifacts.list_documents(f"runs/{run_id}/steps"):
            data = self.artifacts.read_document(name)
            if data is not None:
                docs.append(orjson.loads(data))
        return docs

    def step(self, run_id: str, node: str) -> dict[str, Any] | None:
        data = self.artifacts.read_document(step_path(run_id, node))
        return None if data is None else orjson.loads(data)


class _NoEvents:
    """Run events have nowhere to go without a database; hooks' failures are in the step's log."""

    def add_event(self, run_id: str, kind: str, detail: str | None = None) -> None:
        return None


class RecordStore:
    """What the engine needs of a metadata store, written beside the outputs."""

    url = ""

    def __init__(self, artifacts: Any) -> None:
        self.steps = RecordSteps(artifacts)
        self.runs = _NoEvents()
        self.records = RunRecords(artifacts)


__all__: Sequence[str] = ["RecordStore", "RunRecords", "SharedCache", "artifact_doc", "artifact_from_doc",
                          "step_from_doc"]
