"""Copying a model version to another registry (two local stores here; between emulators and
PostgreSQL in tests/store/test_store_copy.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

import conveyor as cv
from conveyor.errors import ArtifactIntegrityError, NotFound
from conveyor.registry import ModelRegistry
from conveyor.registry.copy import copy_version
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.copy import Stores, copy_runs
from conveyor.store.metadata import MetadataStore
from conveyor.store.metadata import tables as t


@cv.step
def prepare(n: int) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, 3))         # large enough to be stored as an object


@cv.step
def train(X: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, X[:, 0] > 0)
    score = float(model.score(X, X[:, 0] > 0))
    cv.log_metric("accuracy", score)
    cv.log_params({"solver": "lbfgs"})
    cv.register_model("churn", model, metrics={"accuracy": score}, tags={"team": "growth"}, data=X)
    return score


@cv.pipeline
def churn_flow(n: int = 3000):
    return train(prepare(n))


def table_counts(md: MetadataStore) -> dict[str, int]:
    """Rows per table: what a repeated copy must leave unchanged."""
    with md.engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar()
                for table in t.metadata.sorted_tables}


@pytest.fixture
def destination(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(MetadataStore(f"sqlite:///{tmp_path / 'dest' / 'metadata.db'}"),
                        ArtifactStore(str(tmp_path / "dest" / "artifacts")), "importer")
    yield reg
    reg.metadata.close()


def test_a_version_arrives_with_its_lineage_profile_and_loads(client, destination) -> None:
    run = client.run_pipeline(churn_flow, {"n": 3000})
    source = client.registry
    done = copy_version(source, destination, "churn:1")
    assert (done.version.version, done.version.new, done.version.renumbered) == (1, True, False)
    assert done.report.transfer.copied == 2 and done.report.without_bytes == 1   # model and profile; X recorded only
    got, want = destination.resolve("churn:1"), source.resolve("churn:1")
    assert (got.id, got.metrics, got.tags, got.signature, got.run_id) == (want.id, want.metrics, want.tags,
                                                                          want.signature, run.id)
    assert (got.approval, got.created_by) == ("pending", "importer")
    X = run.output("prepare")
    assert (destination.load("churn:1").predict(X) == source.load("churn:1").predict(X)).all()
    assert destination.profile("churn:1").to_dict() == source.profile("churn:1").to_dict()
    here, there = destination.lineage("churn:1"), source.lineage("churn:1")
    assert here.run["id"] == run.id and here.steps == there.steps and here.inputs == there.inputs
    assert here.run["pipeline_version"] == there.run["pipeline_version"]
    assert here.environment == there.environment
    entry = destination.audit("churn")[0]
    assert entry.action == "copy" and entry.version == 1 and "copied from" in entry.detail


def test_copying_again_changes_nothing(client, destination) -> None:
    client.run_pipeline(churn_flow, {"n": 3000})
    copy_version(client.registry, destination, "churn:1", with_data=True)
    before = table_counts(destination.metadata)
    objects = sorted(Path(destination.artifacts.root, "objects").rglob("*"))
    again = copy_version(client.registry, destination, "churn:1", with_data=True)
    assert not again.report.changed and not again.version.new
    assert again.report.transfer.skipped == 3 and again.report.transfer.copied == 0
    assert table_counts(destination.metadata) == before
    assert sorted(Path(destination.artifacts.root, "objects").rglob("*")) == objects


def test_a_taken_number_gives_the_next_and_says_so(client, destination) -> None:
    from sklearn.dummy import DummyClassifier

    destination.register("churn", DummyClassifier().fit([[0]], [0]))       # churn:1 exists there already
    client.run_pipeline(churn_flow, {"n": 3000})
    done = copy_version(client.registry, destination, "churn:1")
    assert (done.version.version, done.version.renumbered) == (2, True)
    assert "version 1 was taken here" in destination.audit("churn")[0].detail
    assert destination.resolve("churn:2").id == client.registry.resolve("churn:1").id
    assert copy_version(client.registry, destination, "churn:1").version.version == 2    # and stays there


def test_a_corrupted_model_is_refused_and_nothing_is_registered(client, destination) -> None:
    client.run_pipeline(churn_flow, {"n": 3000})
    model = client.metadata.artifacts.get(client.registry.resolve("churn:1").artifact_id)
    path = Path(client.artifacts.object_path(model.content_hash))
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(ArtifactIntegrityError, match="corrupted or was changed"):
        copy_version(client.registry, destination, "churn:1")
    with pytest.raises(NotFound):
        destination.resolve("churn:1")
    assert table_counts(destination.metadata)["runs"] == 0
    # the profile may have arrived before the model was refused (whole, and unreferenced); the model did not
    arrived = [p for p in Path(destination.artifacts.root).rglob("*") if p.is_file()]
    assert model.content_hash.split(":")[1] not in [p.name for p in arrived]
    assert all(p.parent.parent.name == "objects" for p in arrived)          # nothing left in tmp/


def test_a_run_copies_with_its_bytes_and_resumes_there(client, destination) -> None:
    run = client.run_pipeline(churn_flow, {"n": 3000})
    dst = Stores(destination.metadata, destination.artifacts)
    report = copy_runs(Stores(client.metadata, client.artifacts), dst, [run.id[:8]], actor="importer")
    assert report.transfer.copied == 3 and report.without_bytes == 0       # X, the model, its profile
    assert [s.name for s in destination.metadata.steps.for_run(run.id)] == ["prepare", "train"]
    # the copy is a run like any other there: its outputs load, and its cache serves a new run
    from conveyor.runtime.client import Client

    there = Client(client.settings, metadata=destination.metadata, artifacts=destination.artifacts)
    again = there.run_pipeline(churn_flow, {"n": 3000})
    assert again.steps["prepare"].status == "cached" and again.steps["train"].status == "cached"
    assert (again.output("prepare") == run.output("prepare")).all()


def test_the_command_says_when_the_number_was_taken(client, tmp_path: Path, capsys) -> None:
    import json

    from sklearn.dummy import DummyClassifier

    from conveyor.cli.main import main

    client.run_pipeline(churn_flow, {"n": 3000})
    dest_db, dest_root = f"sqlite:///{tmp_path / 'd' / 'm.db'}", str(tmp_path / "d" / "artifacts")
    taken = ModelRegistry(MetadataStore(dest_db), ArtifactStore(dest_root), "someone")
    taken.register("churn", DummyClassifier().fit([[0]], [0]))
    capsys.readouterr()
    main(["models", "copy", "churn:1", "--to-metadata", dest_db, "--to-artifacts", dest_root])
    out = capsys.readouterr().out
    assert "as churn:2: version 1 was taken there" in out and "2 object(s) copied" in out
    main(["models", "copy", "churn:1", "--to-metadata", dest_db, "--to-artifacts", dest_root, "--json"])
    again = json.loads(capsys.readouterr().out)
    assert again["destination"] == "churn:2" and not again["new"] and again["records"] == {}
    assert again["bytes"]["copied"] == 0 and again["bytes"]["skipped"] == 2
    taken.metadata.close()


def test_a_bundle_travels_as_json_and_absorbs_the_same(client, destination) -> None:
    import orjson

    from conveyor.errors import InvalidRequest
    from conveyor.store.metadata import RecordBundle

    run = client.run_pipeline(churn_flow, {"n": 3000})
    bundle = client.metadata.bundles.collect(run_ids=[run.id])
    travelled = RecordBundle.from_dict(orjson.loads(orjson.dumps(bundle.to_dict())))
    report = destination.metadata.bundles.absorb(travelled, actor="importer")
    assert report.inserted["step_runs"] == 2 and report.inserted["runs"] == 1
    assert destination.metadata.runs.get(run.id).parameters == {"n": 3000}
    metrics = client.metadata.tracking.metrics(run.id)
    assert [m.key for m in metrics] == ["accuracy"] and destination.metadata.tracking.metrics(run.id) == metrics
    assert destination.metadata.tracking.params(run.id) == client.metadata.tracking.params(run.id) == {
        "n": 3000, "solver": "lbfgs"}
    assert destination.metadata.bundles.absorb(travelled, actor="importer").inserted == {}
    with pytest.raises(InvalidRequest, match="format 99"):
        RecordBundle.from_dict({"format": 99, "tables": {}})
