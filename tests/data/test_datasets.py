"""Versioned datasets: content identity, aliases and refs, lineage from producers and readers, manifests
that never re-read unchanged files, and registrations that fail leaving nothing behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select, text

import conveyor as cv
from conveyor.data.dataset_refs import parse_dataset_ref
from conveyor.data.datasets import DatasetCatalog
from conveyor.errors import ArtifactIntegrityError, InvalidRequest, NotFound
from conveyor.store.metadata import tables as t


@pytest.fixture
def catalog(client) -> DatasetCatalog:
    return DatasetCatalog(client.metadata, client.artifacts, client.settings.actor)


def _customers(n: int = 1000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": np.arange(n), "age": rng.integers(18, 90, n), "spend": rng.normal(100, 20, n),
                     "plan": rng.choice(["free", "pro", "team"], n)})


def _count(client, table) -> int:
    with client.metadata.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_same_content_is_the_same_version_and_refs_resolve(catalog, client) -> None:
    table = _customers()
    v1 = catalog.register("customers", table, alias="train")
    # the same rows chunked differently are the same content; so is a DataFrame under another index
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=97))
    assert catalog.register("customers", rechunked).version == 1
    frame = table.to_pandas()
    assert catalog.register("frames", frame).ref == catalog.register("frames", frame.set_index(frame.index + 7)).ref
    assert _count(client, t.dataset_versions) == 2
    v2 = catalog.register("customers", _customers(seed=1))
    assert (v1.version, v2.version) == (1, 2) and v1.content_hash != v2.content_hash
    assert (v1.num_rows, [c["name"] for c in v1.schema]) == (1000, ["id", "age", "spend", "plan"])
    assert catalog.resolve("customers").version == 2                     # a bare name: the latest
    assert catalog.resolve("customers@train").version == 1
    assert catalog.load("customers:1").equals(table)
    assert catalog.load("dataset://customers@train").equals(table)
    catalog.set_alias("customers:2", "train")
    assert catalog.resolve("customers@train").version == 2
    assert catalog.profile("customers:1").columns["spend"].kind == "numeric"
    assert [(d["name"], d["versions"]) for d in catalog.list()] == [("customers", 2), ("frames", 1)]
    # the dataset source resolves refs wherever data is read
    assert cv.data.read("dataset://customers:1", client=client).equals(table)
    assert sum(b.num_rows for b in cv.data.open_source("dataset://customers@train", client=client).batches()) == 1000


def test_bad_refs_are_clear_errors(catalog) -> None:
    catalog.register("customers", _customers(10))
    with pytest.raises(InvalidRequest, match="positive whole number, e.g. customers:3"):
        parse_dataset_ref("customers:x")
    with pytest.raises(InvalidRequest, match="mixes a version and an alias"):
        parse_dataset_ref("customers@train:3")
    with pytest.raises(InvalidRequest, match="Dataset name 'bad name' is not valid"):
        parse_dataset_ref("bad name")
    with pytest.raises(NotFound, match="No dataset 'nope'. Registered datasets: customers"):
        catalog.resolve("nope:1")
    with pytest.raises(NotFound, match="has no alias 'prod'.*conveyor datasets alias customers:VERSION prod"):
        catalog.resolve("customers@prod")
    with pytest.raises(NotFound, match="has no version 7; its latest is 1"):
        catalog.load("customers:7")
    with pytest.raises(InvalidRequest, match="start with a letter"):
        catalog.set_alias("customers:1", "3")


@cv.step(cache=False)
def make_customers(seed: int) -> object:
    return cv.data.register_dataset("customers", _customers(200, seed), alias="train").version


@cv.step(cache=False)
def read_customers(version: int) -> int:
    return cv.data.load_dataset("customers@train").num_rows + version * 0


@cv.pipeline
def produce_and_read(seed: int = 0):
    read_customers(make_customers(seed))


def test_lineage_names_the_producing_run_and_every_reader(client, catalog) -> None:
    first = produce_and_read.run(seed=0, client=client)
    second = produce_and_read.run(seed=0, client=client)   # same content: same version, read again
    assert first.output("read_customers") == 200
    lin = catalog.lineage("customers:1")
    assert lin["produced_by"]["run_id"] == first.id
    assert [u.run_id for u in lin["produced"]] == [first.id, second.id]
    assert [u.run_id for u in lin["read"]] == [first.id, second.id]
    version = catalog.resolve("customers:1")
    # inside the step the version is the step's input in the run's lineage, and the step's output
    reader_step = next(s for s in client.metadata.steps.for_run(first.id) if s.name == "read_customers")
    edges = client.metadata.artifacts.step_edges(reader_step.id)
    assert ("input", "dataset:customers:1", version.artifact_id) in {(e.direction, e.name, e.artifact_id) for e in edges}
    producer = client.metadata.artifacts.edges(version.artifact_id)
    assert {(e.direction, e.step_name, e.run_id) for e in producer} >= {("output", "make_customers", first.id)}
    # the ready-made step does the same from a pipeline
    @cv.pipeline
    def register_step():
        cv.data.register_dataset_step(make_table(), name="accounts", alias="latest")

    run = register_step.run(client=client)
    assert run.output("register_dataset")["ref"] == "accounts:1"
    assert catalog.resolve("accounts@latest").run_id == run.id


@cv.step
def make_table() -> object:
    return _customers(50)


def test_a_failed_registration_leaves_nothing_half_registered(client, catalog) -> None:
    before = {tab.name: _count(client, tab) for tab in (t.runs, t.artifacts, t.dataset_versions, t.datasets)}
    with pytest.raises(InvalidRequest, match="alias"):
        catalog.register("customers", _customers(10), alias="9lives")
    # a failure inside the recording transaction (its last write): nothing of the version remains
    with client.metadata.engine.begin() as conn:
        conn.execute(text("DROP TABLE dataset_aliases"))
    with pytest.raises(Exception):
        catalog.register("customers", _customers(10), alias="train")
    after = {tab.name: _count(client, tab) for tab in (t.runs, t.artifacts, t.dataset_versions, t.datasets)}
    assert after == before


def _write_parts(folder: Path, tables: list[pa.Table]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(tables):
        pq.write_table(part, folder / f"part-{i:03d}.parquet")


def test_a_file_set_is_versioned_by_manifest_and_unchanged_files_are_not_read(client, catalog, tmp_path) -> None:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    opened: list[str] = []

    class CountingFileSystem(LocalFileSystem):
        protocol = "countfile"

        def _open(self, path, mode="rb", **kwargs):
            if "r" in mode:
                opened.append(path)
            return super()._open(path, mode, **kwargs)

    fsspec.register_implementation("countfile", CountingFileSystem, clobber=True)
    folder = tmp_path / "events"
    parts = [_customers(100, seed) for seed in range(20)]
    _write_parts(folder, parts)
    uri = f"countfile://{folder}"
    v1 = catalog.register("events", uri)
    assert (v1.kind, v1.num_files, v1.num_rows) == ("files", 20, 2000)
    assert len({p for p in opened if p.endswith(".parquet")}) == 20
    assert catalog.manifest("events:1").column("hash")[0].as_py() == \
        "sha256:" + hashlib.sha256((folder / "part-000.parquet").read_bytes()).hexdigest()
    # nothing changed: same version, and not one file is opened to hash it (profile=False: no row reads)
    opened.clear()
    assert catalog.register("events", uri, profile=False).version == 1
    assert opened == []
    # one file touched (a new mtime, same bytes) and one rewritten: only those two are read
    (folder / "part-005.parquet").touch()
    pq.write_table(_customers(100, seed=99), folder / "part-007.parquet")
    opened.clear()
    v2 = catalog.register("events", uri, profile=False)
    assert v2.version == 2
    assert sorted(set(opened)) == [f"{folder}/part-005.parquet", f"{folder}/part-007.parquet"]
    # rows of a tabular file set load through the manifest
    assert catalog.load("events:2").num_rows == 2000
    # the files-level diff names exactly the changed file
    d = catalog.diff("events:1", "events:2")
    assert (d.added, d.removed, d.changed, d.changed_by_column) == (0, 0, 1, {"size": d.changed_by_column["size"],
                                                                               "hash": 1})
    assert d.examples["changed"][0]["key"] == {"path": "part-007.parquet"}
    # a file changed after registration: loading the old version says so instead of reading other rows
    with pytest.raises(ArtifactIntegrityError, match="changed or vanished"):
        catalog.load("events:1")


def test_an_unreadable_file_registers_nothing(client, catalog, tmp_path) -> None:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    class FailingFileSystem(LocalFileSystem):
        protocol = "failfile"

        def _open(self, path, mode="rb", **kwargs):
            if path.endswith("part-001.parquet"):
                raise PermissionError(13, "Permission denied", path)
            return super()._open(path, mode, **kwargs)

    fsspec.register_implementation("failfile", FailingFileSystem, clobber=True)
    _write_parts(tmp_path / "ev", [_customers(10, s) for s in range(3)])
    with pytest.raises(ArtifactIntegrityError, match="part-001.parquet to version it.*Nothing was registered"):
        catalog.register("ev", f"failfile://{tmp_path / 'ev'}")
    assert _count(client, t.dataset_versions) == 0 and _count(client, t.artifacts) == 0
    with pytest.raises(NotFound, match="Nothing at"):
        catalog.register("ev", str(tmp_path / "missing"))


def test_dataframes_round_trip_without_pandas_metadata(catalog) -> None:
    df = pd.DataFrame({"id": [3, 1, 2], "x": [0.5, None, 2.0]}, index=[10, 11, 12])
    v = catalog.register("frame", df)
    loaded = catalog.load(v.ref)
    assert loaded.schema.metadata is None
    assert loaded.column("id").to_pylist() == [3, 1, 2] and loaded.column("x").null_count == 1


def test_blake3_manifests_hash_with_blake3_and_never_reuse_sha256_hashes(catalog, tmp_path) -> None:
    import blake3

    _write_parts(tmp_path / "b3", [_customers(10, s) for s in range(2)])
    sha = catalog.register("b3", str(tmp_path / "b3"))
    b3 = catalog.register("b3", str(tmp_path / "b3"), algorithm="blake3")
    assert b3.version == sha.version + 1 and b3.content_hash != sha.content_hash
    assert catalog.manifest(b3.ref).column("hash")[1].as_py() == \
        "blake3:" + blake3.blake3((tmp_path / "b3" / "part-001.parquet").read_bytes()).hexdigest()
    assert catalog.register("b3", str(tmp_path / "b3"), algorithm="blake3").version == b3.version
    with pytest.raises(InvalidRequest, match="Unknown hash algorithm 'md5'"):
        catalog.register("b3", str(tmp_path / "b3"), algorithm="md5")


@pytest.mark.slow
@pytest.mark.postgres
def test_versions_lineage_and_file_sets_on_postgresql_and_s3(postgres_url, s3_emulator, settings,
                                                             monkeypatch) -> None:
    import io

    import s3fs

    from conveyor.data.manifest import build_manifest
    from conveyor.runtime.client import Client

    for key, value in s3_emulator.environment.items():
        monkeypatch.setenv(key, value)
    s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_emulator.url})
    bucket = f"ds-{np.random.default_rng().integers(1 << 30)}"
    s3.mkdir(bucket)

    def put(i: int, seed: int) -> None:
        buf = io.BytesIO()
        pq.write_table(_customers(50, seed), buf)
        s3.pipe(f"{bucket}/events/part-{i}.parquet", buf.getvalue())

    for i in range(3):
        put(i, i)
    client = Client(settings.with_overrides(metadata_url=postgres_url))
    catalog = DatasetCatalog(client.metadata, client.artifacts, "tester")
    try:
        run = produce_and_read.run(seed=4, client=client)
        lin = catalog.lineage("customers@train")
        assert [u.run_id for u in lin["produced"]] == [run.id] and [u.run_id for u in lin["read"]] == [run.id]
        uri = f"s3://{bucket}/events/"
        v1 = catalog.register("events", uri)
        assert (v1.num_files, v1.num_rows) == (3, 150)
        # the ETag stands for the bytes: an unchanged object is never fetched again
        again = build_manifest(uri, previous=catalog.manifest("events:1"))
        assert (again.hashed, again.reused, again.content_hash) == (0, 3, v1.content_hash)
        put(1, 99)
        v2 = catalog.register("events", uri)
        d = catalog.diff("events:1", "events:2")
        assert (v2.version, d.changed, d.examples["changed"][0]["key"]) == (2, 1, {"path": "part-1.parquet"})
        assert catalog.load("events:2").num_rows == 150
    finally:
        client.close()
