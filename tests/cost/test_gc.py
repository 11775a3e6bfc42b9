"""Storage gc on a local folder and on the S3 emulator: what is kept still loads and resumes, the rest is gone."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import select

from conveyor.cost.gc import collect
from conveyor.errors import StepFailed
from conveyor.store.metadata import tables as t
from tests.cost import pipelines as p
from tests.cost.conftest import DAY, age_run


def _objects(client: Any) -> set[str]:
    return {k.rsplit("/", 1)[-1] for k in client.root.keys() if k.startswith("objects/")}


def _hexes(client: Any, run_id: str) -> set[str]:
    with client.metadata.artifacts.read() as conn:
        rows = conn.execute(select(t.artifacts.c.content_hash).where(t.artifacts.c.run_id == run_id,
                                                                     t.artifacts.c.uri.isnot(None)))
        return {h.split(":")[-1] for (h,) in rows}


def test_gc_keeps_registered_models_and_resumable_runs_and_removes_old_unregistered_runs(root_client) -> None:
    c = root_client
    registered = p.chain.run(client=c, seed=1)
    model_id = next(a.id for s, n, a in c.metadata.artifacts.for_run(registered.id) if s == "fit")
    c.registry.register("m", artifact_id=model_id, run_id=registered.id)
    c.registry.register("m", np.arange(50_000.0), run_id=registered.id, data=None)     # a second version, stored now
    c.registry.set_alias("m", "candidate", 1)
    old = p.chain.run(client=c, seed=2)
    with pytest.raises(StepFailed):
        p.chain.run(client=c, seed=3, fail=True)
    failed_id = c.list_runs(limit=1)[0].id
    age_run(c.metadata, registered.id, 40)
    age_run(c.metadata, old.id, 40)
    with c.metadata.artifacts.write() as conn:    # the version stored now is old too
        conn.execute(t.artifacts.update().values(created_at=t.artifacts.c.created_at - 40 * DAY)
                     .where(t.artifacts.c.name == "model/m"))
    old_hexes, failed_hexes = _hexes(c, old.id), _hexes(c, failed_id)
    with c.metadata.artifacts.read() as conn:
        model_hexes = {h.split(":")[-1] for (h,) in conn.execute(select(t.artifacts.c.content_hash).join(
            t.model_versions, t.model_versions.c.artifact_id == t.artifacts.c.id))}
    gone = (old_hexes | _hexes(c, registered.id)) - model_hexes   # the registered run's other outputs go too
    before = _objects(c)
    assert old_hexes <= before and failed_hexes <= before and len(model_hexes) == 2

    dry = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY, dry_run=True)
    assert dry.rows_deleted > 0 and _objects(c) == before       # a dry run changes nothing
    report = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY)
    assert report.to_dict()["rows_deleted"] == dry.rows_deleted
    assert report.objects_deleted == dry.objects_deleted == len(gone) == 5
    after = _objects(c)
    assert not (gone & after) and model_hexes | failed_hexes <= after   # the old unregistered run's bytes are gone
    assert report.bytes_freed == dry.bytes_freed > 0
    assert _hexes(c, old.id) == set()                            # and no row points at them
    with c.metadata.artifacts.read() as conn:
        dangling = conn.execute(select(t.lineage.c.id).outerjoin(
            t.artifacts, t.artifacts.c.id == t.lineage.c.artifact_id).where(t.artifacts.c.id.is_(None))).all()
    assert dangling == []
    events = [kind for _at, kind, _d in c.metadata.runs.events(old.id)]
    assert "artifacts_collected" in events

    for version in c.registry.versions("m"):                    # every registered version still loads
        assert c.registry.load(f"m:{version.version}") is not None
    np.testing.assert_array_equal(c.registry.load("m@candidate"), registered.output("fit"))
    resumed = c.resume(failed_id, params={"fail": False})        # the kept failed run resumes from its outputs
    assert resumed.status == "succeeded"
    names = [s.name for s in c.metadata.steps.for_run(failed_id)]
    assert names.count("load") == names.count("fit") == 1 and names.count("check") == 2   # only check ran again

    again = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY)
    assert again.rows_deleted == 0 and again.objects_deleted == 0


def test_gc_removes_old_orphans_and_old_temporary_files_but_not_recent_ones(client) -> None:
    root = client.artifacts.base
    p.chain.run(client=client, seed=5)
    old_orphan = f"{root}/objects/ab/ab{'0' * 62}"
    new_orphan = f"{root}/objects/cd/cd{'0' * 62}"
    old_tmp = f"{root}/tmp/{'e' * 32}"
    for path in (old_orphan, new_orphan, old_tmp):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(b"x" * 10)
    past = time.time() - 40 * DAY
    os.utime(old_orphan, (past, past))
    os.utime(old_tmp, (past, past))
    report = collect(client.metadata, [client.artifacts], older_than_s=30 * DAY)
    assert report.roots[0].orphans_deleted == 1 and report.roots[0].orphan_bytes == 10
    assert report.roots[0].temporary_deleted == 1 and report.rows_deleted == 0
    assert not os.path.exists(old_orphan) and not os.path.exists(old_tmp) and os.path.exists(new_orphan)


def test_a_running_run_keeps_its_artifacts_at_any_age_and_records_in_the_root_keep_theirs(client) -> None:
    run = p.chain.run(client=client, seed=6)
    age_run(client.metadata, run.id, 400)
    with client.metadata.artifacts.write() as conn:
        conn.execute(t.runs.update().where(t.runs.c.id == run.id).values(status="running"))
    report = collect(client.metadata, [client.artifacts], older_than_s=30 * DAY)
    assert report.rows_deleted == 0
    with client.metadata.artifacts.write() as conn:
        conn.execute(t.runs.update().where(t.runs.c.id == run.id).values(status="succeeded"))
    # a recent step record in the root (a task without a database) names one of the objects: it stays
    hexes = sorted(_hexes(client, run.id))
    client.artifacts.write_document("runs/elsewhere/steps/fit.json", orjson.dumps(
        {"outputs": {"out": {"content_hash": f"sha256:{hexes[0]}", "uri": "s3://x"}}}))
    report = collect(client.metadata, [client.artifacts], older_than_s=30 * DAY)
    assert report.rows_deleted == 3 and report.objects_deleted == len(hexes) - 1
    assert report.roots[0].kept_by_documents == 1
    assert os.path.exists(client.artifacts.object_path(f"sha256:{hexes[0]}"))
    assert not os.path.exists(client.artifacts.object_path(f"sha256:{hexes[1]}"))


def test_gc_sweeps_every_root_it_is_given(client, tmp_path) -> None:
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.artifacts.transfer import transfer

    run = p.chain.run(client=client, seed=7)
    copy = ArtifactStore(str(tmp_path / "copy"))        # a copy of the run's objects, as `runs copy` makes
    transfer(client.artifacts, copy, [_stored(a) for _s, _n, a in client.metadata.artifacts.for_run(run.id)])
    age_run(client.metadata, run.id, 40)
    report = collect(client.metadata, [client.artifacts, copy], older_than_s=30 * DAY)
    assert [r.objects_deleted for r in report.roots] == [3, 3]
    assert [r.root for r in report.roots] == [client.artifacts.root, copy.root]
    assert not [f for f in (tmp_path / "copy" / "objects").rglob("*") if f.is_file()]


def _stored(a):
    from conveyor.runtime.slots import stored_from_record

    return stored_from_record(a)


def test_modification_times_are_read_from_every_filesystem_s_listing() -> None:
    import datetime as dt

    from conveyor.cost.gc import modified_at

    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert modified_at({"mtime": at.timestamp()}) == at.timestamp()                 # local folder
    assert modified_at({"LastModified": at}) == at.timestamp()                      # s3fs
    assert modified_at({"updated": "2026-01-02T03:04:05.000Z"}) == at.timestamp()   # gcsfs
    assert modified_at({"last_modified": at.replace(tzinfo=None)}) == at.timestamp()   # adlfs, naive UTC
    assert modified_at({"size": 3}) is None                                         # unknown: never an orphan


def _checkpoint(c: Any, run_id: str) -> tuple[str, str]:
    """The paths of a run's checkpoint of ``trains``: its document and the object it names."""
    doc = f"{c.artifacts.base}/checkpoints/{run_id}/trains.json"
    with open(doc, "rb") as fh:
        stored = orjson.loads(fh.read())["stored"]
    assert stored["uri"]                                    # held as an object, not inline
    return doc, c.artifacts.object_path(stored["content_hash"])


def _failed_training(c: Any) -> str:
    with pytest.raises(StepFailed):
        p.training.run(client=c, fail_at=2)
    return c.list_runs(limit=1)[0].id


def test_gc_removes_checkpoints_of_calls_that_succeeded_or_of_old_runs_and_keeps_resumable_ones(client) -> None:
    c = client
    done = p.training.run(client=c)                         # succeeded: its checkpoint is garbage, however recent
    resumable = _failed_training(c)                         # failed within retention: resumed later
    waiting = _failed_training(c)                           # preempted and waiting to run again, long ago
    expired = _failed_training(c)                           # failed, past retention
    paths = {run_id: _checkpoint(c, run_id) for run_id in (done.id, resumable, waiting, expired)}
    assert len({obj for _doc, obj in paths.values()}) == 2   # the same weights: the same objects
    age_run(c.metadata, expired, 40)
    age_run(c.metadata, waiting, 400)
    with c.metadata.artifacts.write() as conn:
        conn.execute(t.runs.update().where(t.runs.c.id == waiting).values(status="running"))
        conn.execute(t.step_runs.update().where(t.step_runs.c.run_id == waiting).values(status="running"))
    stranger = f"{c.artifacts.base}/checkpoints/unknown-run/trains.3.json"   # no database row: judged by age
    recent = f"{c.artifacts.base}/checkpoints/another-run/trains.json"
    for path in (stranger, recent):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(orjson.dumps({"attempt": 1, "stored": {"uri": None, "content_hash": "sha256:00"}}))
    past = time.time() - 40 * DAY
    for path in (stranger, *(obj for _doc, obj in paths.values())):   # every checkpoint object is old
        os.utime(path, (past, past))

    dry = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY, dry_run=True)
    assert dry.checkpoints_deleted == 3 and dry.roots[0].checkpoints_kept == 3
    assert dry.to_dict()["roots"][0]["checkpoint_bytes"] > 0
    assert all(os.path.exists(doc) and os.path.exists(obj) for doc, obj in paths.values())   # nothing changed

    report = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY)
    assert report.checkpoints_deleted == 3 and report.bytes_freed >= report.roots[0].checkpoint_bytes > 0
    assert report.roots[0].checkpoint_bytes == dry.roots[0].checkpoint_bytes
    for gone in (done.id, expired):
        assert not os.path.exists(paths[gone][0])
    assert not os.path.exists(paths[done.id][1])            # the object only that checkpoint named went with it
    assert not os.path.exists(stranger) and os.path.exists(recent)
    for kept in (resumable, waiting):                       # kept with their objects, though these are old
        assert all(os.path.exists(path) for path in paths[kept])

    resumed = c.resume(resumable, params={"fail_at": -1})   # continues from the checkpoint gc left
    assert resumed.status == "succeeded" and resumed.output("trains") == 2
    again = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY)
    assert again.checkpoints_deleted == 1 and not os.path.exists(paths[resumable][0])   # it succeeded since
    assert all(os.path.exists(path) for path in paths[waiting])
