"""A model trained on one cloud, served from another: copies between two emulators and two databases.

Each case trains and registers on one artifact root and metadata store, copies with
``conveyor models copy`` or ``conveyor runs copy`` to another, and uses the copy there: the
registry loads it, a real ``conveyor serve`` answers with it after the source bucket is gone.
Corrupted sources are refused with nothing registered; an interrupted copy resumes with what is
missing.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conveyor.cli.main import main
from tests.registry.test_copy import churn_flow, table_counts
from tests.store.artifacts.test_transfer import Recorder
from tests.store.conftest import ArtifactRoot, open_root

pytestmark = pytest.mark.slow


def _metadata_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    if kind == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / name / 'metadata.db'}"


class Side:
    """One place a model lives: an artifact root on some store and a metadata database."""

    def __init__(self, root: ArtifactRoot, metadata_url: str, settings) -> None:
        from conveyor.runtime.client import Client
        from conveyor.runtime.worker import artifact_store
        from conveyor.store.metadata import MetadataStore

        self.root, self.metadata_url = root, metadata_url
        self.artifacts_url = root.join("artifacts")
        self.client = Client(settings, metadata=MetadataStore(metadata_url),
                             artifacts=artifact_store(self.artifacts_url, settings.inline_max_bytes))

    def env(self) -> dict[str, str]:
        return {"CONVEYOR_METADATA_URL": self.metadata_url, "CONVEYOR_ARTIFACT_ROOT": self.artifacts_url}

    def objects(self) -> list[str]:
        self.root.other.invalidate_cache()
        return [k for k in self.root.keys() if k.startswith("artifacts/objects/")]

    def temporaries(self) -> list[str]:
        self.root.other.invalidate_cache()
        return [k for k in self.root.keys() if k.startswith("artifacts/tmp/")]


@pytest.fixture
def sides(request: pytest.FixtureRequest, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(source, destination) for the pair the test is parametrised with; the source is the default store."""
    (src_store, src_db), (dst_store, dst_db) = request.param
    made = []
    for store, db, name in ((src_store, src_db, "src"), (dst_store, dst_db, "dst")):
        root = open_root(store, request, tmp_path, monkeypatch)
        made.append(Side(root, _metadata_url(db, request, tmp_path, name), settings))
    for key, value in made[0].env().items():      # the commands' source is what the settings name
        monkeypatch.setenv(key, value)
    yield made
    for side in made:
        side.client.close()


def _cli(*argv: str) -> None:
    main(list(argv))


PAIRS = [pytest.param((("s3", "sqlite"), ("az", "postgres")), id="s3+sqlite-to-az+postgres"),
         pytest.param((("gs", "postgres"), ("local", "sqlite")), id="gs+postgres-to-local+sqlite")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sides", PAIRS, indirect=True)
def test_a_model_trained_on_one_store_is_served_from_the_other(sides, serve_process, capsys) -> None:
    src, dst = sides
    run = src.client.run_pipeline(churn_flow, {"n": 3000})
    X = run.output("prepare")
    expected = src.client.registry.load("churn:1").predict(X[:5])
    capsys.readouterr()
    _cli("models", "copy", "churn:1", "--to-metadata", dst.metadata_url, "--to-artifacts", dst.artifacts_url)
    out = capsys.readouterr().out
    assert "as churn:1 (pending approval)" in out and "2 object(s) copied" in out

    registry = dst.client.registry
    version, original = registry.resolve("churn:1"), src.client.registry.resolve("churn:1")
    assert (version.metrics, version.tags, version.signature) == (original.metrics, original.tags, original.signature)
    assert registry.lineage("churn:1").run["id"] == run.id
    assert [s["name"] for s in registry.lineage("churn:1").steps] == ["prepare", "train"]
    assert registry.profile("churn:1").to_dict() == src.client.registry.profile("churn:1").to_dict()
    assert len(dst.objects()) == 2 and not dst.temporaries()

    # the same command again: nothing to do, nothing changed
    counts, objects = table_counts(dst.client.metadata), dst.objects()
    _cli("models", "copy", "churn:1", "--to-metadata", dst.metadata_url, "--to-artifacts", dst.artifacts_url)
    assert "already at the destination as churn:1; nothing changed" in capsys.readouterr().out
    assert table_counts(dst.client.metadata) == counts and dst.objects() == objects

    # served from the destination alone: the source's bytes are gone
    src.root.other.rm(src.root.bucket if src.root.name != "local" else src.root.url, recursive=True)
    dst.client.metadata.endpoints.create("churn", {"routes": [{"model": "churn:1", "weight": 100}]}, "t")
    server = serve_process("--no-access-log", "--no-prediction-log", env=dst.env())
    answer = httpx.post(f"{server.url}/invocations", json={"instances": X[:5].tolist()}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected.tolist()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sides", [pytest.param((("s3", "sqlite"), ("az", "sqlite")), id="s3-to-az")],
                         indirect=True)
def test_a_corrupted_source_object_is_refused_and_nothing_is_registered(sides, capsys) -> None:
    src, dst = sides
    src.client.run_pipeline(churn_flow, {"n": 3000})
    model = src.client.metadata.artifacts.get(src.client.registry.resolve("churn:1").artifact_id)
    hexpart = model.content_hash.split(":")[1]
    key = src.root.path("artifacts", "objects", hexpart[:2], hexpart)
    data = src.root.other.cat(key)
    src.root.other.pipe(key, data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(SystemExit) as exit_:
        _cli("models", "copy", "churn:1", "--to-metadata", dst.metadata_url, "--to-artifacts", dst.artifacts_url)
    assert exit_.value.code == 4
    assert "corrupted or was changed" in capsys.readouterr().err
    assert dst.client.registry.list_models() == [] and table_counts(dst.client.metadata)["artifacts"] == 0
    assert model.content_hash.split(":")[1] not in " ".join(dst.objects()) and not dst.temporaries()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sides", [pytest.param((("gs", "sqlite"), ("s3", "postgres")), id="gs-to-s3+postgres")],
                         indirect=True)
def test_an_interrupted_run_copy_resumes_with_what_is_missing(sides, capsys) -> None:
    from conveyor.store.copy import Stores, copy_runs

    src, dst = sides
    run = src.client.run_pipeline(churn_flow, {"n": 3000})
    source = Stores(src.client.metadata, src.client.artifacts)
    target = Stores(dst.client.metadata, dst.client.artifacts)
    class StopInSecond(Recorder):
        """Interrupts the copy while the second object is being written."""

        def advance(self, nbytes: int) -> None:
            super().advance(nbytes)
            if len(self.done) == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_runs(source, target, [run.id], actor="t", progress=StopInSecond())
    assert len(dst.objects()) == 1 and not dst.temporaries()
    assert table_counts(dst.client.metadata)["runs"] == 0      # records come only after every byte arrived

    _cli("runs", "copy", run.id, "--to-metadata", dst.metadata_url, "--to-artifacts", dst.artifacts_url, "--json")
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["bytes"]["copied"] == 2 and report["bytes"]["skipped"] == 1
    assert len(dst.objects()) == 3
    steps = dst.client.metadata.steps.for_run(run.id)
    assert [s.name for s in steps] == ["prepare", "train"]
    from conveyor.runtime.slots import stored_from_record

    outputs = dst.client.metadata.steps.outputs([s.id for s in steps])
    X = dst.client.artifacts.get(stored_from_record(outputs[steps[0].id]["output"]))
    assert (X == run.output("prepare")).all()
    model = dst.client.artifacts.get(stored_from_record(outputs[steps[1].id]["model/churn"]))
    assert model.score(X, X[:, 0] > 0) == run.output("train")
