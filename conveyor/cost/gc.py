"""Storage garbage collection: remove the artifacts nothing keeps, rows and bytes, from every root.

An artifact row is kept when any of these holds (``kept_condition``, one SQL expression):

- a registered model version uses it, in any state (the model, or its reference profile); an
  alias points at a version, so alias targets are kept with every other version;
- a dataset version uses it (its table or manifest, or its profile); dataset aliases point at
  versions;
- a run within retention produced it or read it (its ``run_id``, or a lineage edge of that run):
  such a run can be inspected, compared and, when it failed or was interrupted, resumed;
- a run that may still be writing produced or read it (``running``, ``queued``, ``pending``,
  whatever its age);
- it is younger than the retention itself (a writer may be about to record a use of it).

A cached step output stays valid while a run within retention produced it or reused it: a cache
hit records the reused artifact as an output of the hitting step run, so the lineage rule keeps
it; an entry no run used within retention expires with its run (the engine then computes again).

An object under ``<root>/objects/`` is removed when no kept row has its content hash (objects
are shared by content) and either a removed row had it, or no row at all knows it and it is
older than the retention (an orphan: written by a run that never recorded it, or left by an
interrupted gc). Records in the root keep their objects too: registrations waiting for
``conveyor runs import`` always, the step records of runs without a database while younger than
the retention. The root's cache index (``cache/``) keeps nothing: an entry whose objects are gone
is a miss (the engine checks an output exists before reusing it). Staged temporary files older
than the retention are removed.

Checkpoints (``checkpoints/<run>/<step>.json`` and the object each names, ``cv.checkpoint``) are
garbage once the step call they belong to has succeeded (a ``succeeded`` or ``cached`` step run of
that call, none ``running`` or ``pending``), or when their run is past retention (known to the
database and neither active nor last active within retention; unknown to it, a document older than
the retention). Any other checkpoint is kept with its object, whatever the object's age: the
step may be running, preempted and waiting to run again, or in a run that can be resumed.

Rows go first, in one transaction (lineage edges, then artifact rows, and an event on each run
that lost artifacts), then the bytes: an interruption leaves unreferenced files, which the next
gc removes as orphans, and never a row pointing at a missing file. Each root is listed with one
``find``; the metadata is read with three set-based queries, however many artifacts there are.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import String, and_, cast, delete, func, insert, literal, not_, or_, select

from conveyor.store.metadata import tables as t

if TYPE_CHECKING:
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

ACTIVE_STATUSES = ("running", "queued", "pending")
DELETE_BATCH = 1000          # paths per delete request (S3's DeleteObjects limit)


@dataclass(slots=True)
class RootReport:
    """What gc found and did in one artifact root."""

    root: str
    examined: int = 0              # objects listed under objects/
    objects_deleted: int = 0       # objects whose rows were all removed
    bytes_freed: int = 0           # by those objects
    orphans_deleted: int = 0       # objects no row knew, older than the retention
    orphan_bytes: int = 0
    temporary_deleted: int = 0     # staged files older than the retention
    kept_by_documents: int = 0     # objects only a document in the root keeps
    checkpoints_deleted: int = 0   # checkpoints of calls that succeeded, or of runs past retention
    checkpoint_bytes: int = 0      # their documents and the objects only they named
    checkpoints_kept: int = 0      # of running, preempted or resumable calls (their objects are kept too)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "examined": self.examined, "objects_deleted": self.objects_deleted,
                "bytes_freed": self.bytes_freed, "orphans_deleted": self.orphans_deleted,
                "orphan_bytes": self.orphan_bytes, "temporary_deleted": self.temporary_deleted,
                "kept_by_documents": self.kept_by_documents, "checkpoints_deleted": self.checkpoints_deleted,
                "checkpoint_bytes": self.checkpoint_bytes, "checkpoints_kept": self.checkpoints_kept}


@dataclass(slots=True)
class GcReport:
    """The outcome of one gc (or of a dry run: what it would do)."""

    dry_run: bool
    older_than_s: float
    cutoff: float
    rows_deleted: int = 0          # artifact rows removed (stored and inline values)
    inline_rows_deleted: int = 0
    rows_kept: int = 0
    runs_touched: int = 0          # runs that lost at least one artifact
    roots: list[RootReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes_freed + r.orphan_bytes + r.checkpoint_bytes for r in self.roots)

    @property
    def objects_deleted(self) -> int:
        return sum(r.objects_deleted + r.orphans_deleted for r in self.roots)

    @property
    def checkpoints_deleted(self) -> int:
        return sum(r.checkpoints_deleted for r in self.roots)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "older_than_s": self.older_than_s, "cutoff": self.cutoff,
                "rows_deleted": self.rows_deleted, "inline_rows_deleted": self.inline_rows_deleted,
                "rows_kept": self.rows_kept, "runs_touched": self.runs_touched,
                "objects_deleted": self.objects_deleted, "bytes_freed": self.bytes_freed,
                "checkpoints_deleted": self.checkpoints_deleted,
                "roots": [r.to_dict() for r in self.roots], "seconds": round(self.seconds, 3)}


# --- what keeps an artifact ---------------------------------------------------------------------

def kept_runs(cutoff: float) -> Any:
    """Ids of the runs whose artifacts stay: active at any age, or last active within retention."""
    r = t.runs
    last = func.coalesce(r.c.ended_at, r.c.started_at, r.c.created_at)
    return select(r.c.id).where(or_(r.c.status.in_(ACTIVE_STATUSES), last >= cutoff))


def kept_condition(cutoff: float) -> Any:
    """True for an artifact row something keeps (see the module docstring); never NULL."""
    a, mv, dv, lin = t.artifacts, t.model_versions, t.dataset_versions, t.lineage
    runs = kept_runs(cutoff)

    def ids(column: Any) -> Any:
        return select(column).where(column.isnot(None))

    return or_(
        a.c.created_at >= cutoff,
        a.c.id.in_(ids(mv.c.artifact_id)),
        a.c.id.in_(ids(mv.c.profile_artifact_id)),
        a.c.id.in_(ids(dv.c.artifact_id)),
        a.c.id.in_(ids(dv.c.profile_artifact_id)),
        and_(a.c.run_id.isnot(None), a.c.run_id.in_(runs)),
        a.c.id.in_(select(lin.c.artifact_id).where(lin.c.run_id.in_(runs))),
    )


# --- the roots ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Listing:
    """One root's files by kind, from one ``find``."""

    objects: dict[str, tuple[str, dict[str, Any]]]   # hex digest -> (path, info)
    temporary: list[tuple[str, dict[str, Any]]]
    documents: list[tuple[str, dict[str, Any]]]       # run records and registrations (runs/)
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)   # checkpoints/<run>/<step>.json


def list_root(store: ArtifactStore) -> Listing:
    """Every file under the root, sorted into objects, staged files and documents."""
    fs, base = store.fs, store.base

    def find() -> dict[str, dict[str, Any]]:
        fs.invalidate_cache(base)     # other machines write here: never answer from a listing cache
        try:
            return fs.find(base, detail=True)
        except FileNotFoundError:
            return {}

    found = store.guarded(find, "listing the artifact root", store.root)
    prefix = base.rstrip("/") + "/"
    listing = Listing({}, [], [])
    cut = len(prefix)
    objects = listing.objects
    for path, info in found.items():
        rel = path[cut:] if path.startswith(prefix) else path
        if rel.startswith("objects/"):
            if rel.count("/") == 2:
                objects[rel[rel.rindex("/") + 1:]] = (path, info)
        elif rel.startswith("tmp/"):
            listing.temporary.append((path, info))
        elif rel.startswith("runs/") and rel.endswith(".json"):
            listing.documents.append((path, info))
        elif rel.startswith("checkpoints/") and rel.endswith(".json") and rel.count("/") == 2:
            listing.checkpoints.append((path, info))
    return listing


def modified_at(info: dict[str, Any]) -> float | None:
    """When a listed file was last written (epoch seconds), from whatever its filesystem reports."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created", "creation_time"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()
    return None


def _hashes_in(value: Any, into: set[str]) -> None:
    """Collect the hex digests of stored artifacts described anywhere inside a record document."""
    if isinstance(value, dict):
        digest = value.get("content_hash")
        if isinstance(digest, str) and value.get("uri"):
            into.add(digest.split(":", 1)[-1])
        for v in value.values():
            if isinstance(v, (dict, list)):
                _hashes_in(v, into)
    elif isinstance(value, list):
        for v in value:
            _hashes_in(v, into)


def document_hashes(store: ArtifactStore, documents: Sequence[tuple[str, dict[str, Any]]], cutoff: float) -> set[str]:
    """Objects the root's own documents still need: pending registrations, and recent records."""
    wanted = []
    for path, info in documents:
        at = modified_at(info)
        if "/registrations/" in path or at is None or at >= cutoff:
            wanted.append(path)
    if not wanted:
        return set()
    contents = store.guarded(lambda: store.fs.cat(wanted, on_error="omit"), "reading records", store.root)
    found: set[str] = set()
    for data in contents.values():
        try:
            _hashes_in(orjson.loads(data), found)
        except orjson.JSONDecodeError:
            continue      # a half-written local temporary; its run is still writing, and its files are recent
    return found


def _remove(store: ArtifactStore, paths: Sequence[str]) -> None:
    for i in range(0, len(paths), DELETE_BATCH):
        batch = list(paths[i:i + DELETE_BATCH])

        def rm(batch: list[str] = batch) -> None:
            try:
                store.fs.rm(batch)
            except FileNotFoundError:
                pass      # removed meanwhile (another gc): the goal is reached
        store.guarded(rm, "removing artifacts", store.root)


def _hex(content_hash: str) -> str:
    return content_hash.split(":", 1)[-1]


# --- checkpoints --------------------------------------------------------------------------------

FINISHED_CALL = ("succeeded", "cached")
UNFINISHED_CALL = ("running", "pending")


def checkpoint_call(path: str) -> tuple[str, str, int | None]:
    """(run id, step node, map index) of a checkpoint document's path (``checkpoints/<run>/<node>[.<i>].json``)."""
    run_id, name = path.rsplit("/", 2)[-2:]
    where = name[:-len(".json")]
    node, dot, index = where.rpartition(".")
    if dot and index.isdigit():
        return run_id, node, int(index)
    return run_id, where, None


def garbage_checkpoints(conn: Any, listings: Sequence[Listing], cutoff: float) -> set[str]:
    """The paths of the listed checkpoints that are garbage (see the module docstring)."""
    calls = {path: checkpoint_call(path) for listing in listings for path, _info in listing.checkpoints}
    if not calls:
        return set()
    run_ids = sorted({c[0] for c in calls.values()})
    r, s = t.runs, t.step_runs
    last = func.coalesce(r.c.ended_at, r.c.started_at, r.c.created_at)
    kept_run: dict[str, bool] = {}
    statuses: dict[tuple[str, str, int | None], set[str]] = {}
    for i in range(0, len(run_ids), 500):   # bounded IN lists
        chunk = run_ids[i:i + 500]
        for run_id, status, at in conn.execute(select(r.c.id, r.c.status, last).where(r.c.id.in_(chunk))):
            kept_run[run_id] = status in ACTIVE_STATUSES or (at is not None and at >= cutoff)
        for run_id, name, index, status in conn.execute(
                select(s.c.run_id, s.c.name, s.c.map_index, s.c.status).where(s.c.run_id.in_(chunk))):
            statuses.setdefault((run_id, name.partition("[")[0], index), set()).add(status)
    ages = {path: modified_at(info) for listing in listings for path, info in listing.checkpoints}
    garbage = set()
    for path, call in calls.items():
        seen = statuses.get(call, set())
        if seen & set(UNFINISHED_CALL):
            continue                       # the call runs (or is about to): its next attempt restores
        if seen & set(FINISHED_CALL):
            garbage.add(path)              # the call succeeded: no attempt will restore again
        elif call[0] in kept_run:
            if not kept_run[call[0]]:
                garbage.add(path)          # a run past retention
        elif (at := ages[path]) is not None and at < cutoff:
            garbage.add(path)              # a run the database does not know, written before the retention
    return garbage


def checkpoint_objects(store: ArtifactStore, paths: Sequence[str]) -> dict[str, str | None]:
    """The hex digest of the object each checkpoint document names (None: held inline, or unreadable)."""
    if not paths:
        return {}
    contents = store.guarded(lambda: store.fs.cat(list(paths), on_error="omit"), "reading checkpoints", store.root)
    out: dict[str, str | None] = {p: None for p in paths}
    for path, data in contents.items():
        try:
            stored = orjson.loads(data).get("stored") or {}
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(stored, dict) and stored.get("uri") and isinstance(stored.get("content_hash"), str):
            out[path] = _hex(stored["content_hash"])
    return out


# --- the collection -----------------------------------------------------------------------------

def keepers(conn: Any, cutoff: float) -> tuple[set[str], set[str]]:
    """(ids of kept runs, ids of artifacts a version or a kept run's lineage names): small, set-based reads."""
    mv, dv, lin = t.model_versions, t.dataset_versions, t.lineage
    runs = set(conn.execute(kept_runs(cutoff)).scalars())
    named = select(mv.c.artifact_id).union(
        select(mv.c.profile_artifact_id), select(dv.c.artifact_id), select(dv.c.profile_artifact_id),
        select(lin.c.artifact_id).where(lin.c.run_id.in_(kept_runs(cutoff))))
    ids = {i for i in conn.execute(named).scalars() if i is not None}
    return runs, ids


def collect(metadata: MetadataStore, stores: Iterable[ArtifactStore], *, older_than_s: float, dry_run: bool = False,
            now: float | None = None) -> GcReport:
    """Remove (or, with ``dry_run``, only count) what nothing keeps, from the metadata and every root."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    cutoff = now - older_than_s
    stores = list(stores)
    report = GcReport(dry_run=dry_run, older_than_s=older_than_s, cutoff=cutoff)
    listings = [list_root(s) for s in stores]      # before the rows: a file written later is not looked at
    a = t.artifacts
    session = metadata.artifacts.read if dry_run else metadata.artifacts.write
    kept_hex: set[str] = set()
    doomed_hex: set[str] = set()
    runs_touched: set[str] = set()
    with session() as conn:
        # The rows are sorted here, in Python, by the same rules as ``kept_condition`` (which the
        # deletes below use, so a use recorded meanwhile is still seen): one read of every row and
        # two small reads of the keepers cost far less than evaluating the condition per row in SQL.
        runs, named = keepers(conn, cutoff)
        garbage = garbage_checkpoints(conn, listings, cutoff)
        rows = conn.execute(select(a.c.id, a.c.content_hash, a.c.uri, a.c.run_id, a.c.created_at)).all()
        for aid, digest, uri, run_id, created_at in rows:
            if created_at >= cutoff or aid in named or (run_id is not None and run_id in runs):
                report.rows_kept += 1
                if uri is not None:
                    kept_hex.add(_hex(digest))
                continue
            report.rows_deleted += 1
            if uri is None:
                report.inline_rows_deleted += 1
            else:
                doomed_hex.add(_hex(digest))
            if run_id is not None:
                runs_touched.add(run_id)
        if report.rows_deleted and not dry_run:
            doomed_where = not_(kept_condition(cutoff))
            detail = (literal("gc removed ") + cast(func.count(), String)
                      + literal(f" artifact(s) no longer kept (older than the retention at {int(cutoff)})"))
            conn.execute(insert(t.run_events).from_select(
                ["run_id", "at", "kind", "detail"],
                select(a.c.run_id, literal(now), literal("artifacts_collected"), detail)
                .join(t.runs, t.runs.c.id == a.c.run_id).where(doomed_where).group_by(a.c.run_id)))
            conn.execute(delete(t.lineage).where(t.lineage.c.artifact_id.in_(select(a.c.id).where(doomed_where))))
            report.rows_deleted = conn.execute(delete(a).where(doomed_where)).rowcount
    report.runs_touched = len(runs_touched)
    known_hex = kept_hex | doomed_hex
    doomed_hex -= kept_hex
    for store, listing in zip(stores, listings, strict=True):
        report.roots.append(_sweep(store, listing, kept_hex, doomed_hex, known_hex, cutoff, dry_run, garbage))
    report.seconds = time.perf_counter() - started
    return report


def _sweep(store: ArtifactStore, listing: Listing, kept_hex: set[str], doomed_hex: set[str], known_hex: set[str],
           cutoff: float, dry_run: bool, garbage: frozenset[str] | set[str] = frozenset()) -> RootReport:
    """Decide, and unless ``dry_run`` remove, the files of one root that nothing keeps."""
    out = RootReport(root=store.root, examined=len(listing.objects))
    candidates = [h for h in listing.objects if h not in kept_hex]
    protected = document_hashes(store, listing.documents, cutoff) if candidates else set()
    named = checkpoint_objects(store, [p for p, _info in listing.checkpoints])
    kept_points = {h for p, h in named.items() if h is not None and p not in garbage}
    protected |= kept_points                    # a kept checkpoint's object stays, whatever its age
    doomed_paths: list[str] = []
    freed_by_points: set[str] = set()
    for path, info in listing.checkpoints:
        if path not in garbage:
            out.checkpoints_kept += 1
            continue
        out.checkpoints_deleted += 1
        out.checkpoint_bytes += int(info.get("size") or 0)
        doomed_paths.append(path)
        digest = named.get(path)
        if digest is not None and digest not in kept_hex and digest not in protected and digest in listing.objects:
            freed_by_points.add(digest)         # the object only garbage checkpoints named
    for digest in candidates:
        path, info = listing.objects[digest]
        size = int(info.get("size") or 0)
        if digest in freed_by_points:
            out.checkpoint_bytes += size
            doomed_paths.append(path)
        elif digest in protected:
            out.kept_by_documents += 1
        elif digest in doomed_hex:
            out.objects_deleted += 1
            out.bytes_freed += size
            doomed_paths.append(path)
        elif digest not in known_hex:
            at = modified_at(info)
            if at is not None and at < cutoff:
                out.orphans_deleted += 1
                out.orphan_bytes += size
                doomed_paths.append(path)
    for path, info in listing.temporary:
        at = modified_at(info)
        if at is not None and at < cutoff:
            out.temporary_deleted += 1
            doomed_paths.append(path)
    if doomed_paths and not dry_run:
        _remove(store, doomed_paths)
    return out
