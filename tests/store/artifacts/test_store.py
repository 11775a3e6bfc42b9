"""The artifact store: round trips, inline values, deduplication, integrity, fsspec backends."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import ArtifactIntegrityError, Conflict, MaterializerNotFound
from conveyor.store.artifacts import ArtifactStore, default_registry, hash_json


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"), materializers=default_registry(), inline_max_bytes=1024)


def _path(stored) -> Path:
    return Path(stored.uri.removeprefix("file://"))


def test_dataframe_round_trip_keeps_dtypes_and_index(store) -> None:
    df = pd.DataFrame({
        "f": np.linspace(0, 1, 50), "i": np.arange(50, dtype="int32"), "b": np.arange(50) % 2 == 0,
        "s": [f"r{i}" for i in range(50)], "c": pd.Categorical(["x", "y"] * 25),
        "t": pd.date_range("2026-01-01", periods=50, freq="h", tz="UTC"),
    }, index=pd.Index(range(100, 150), name="row"))
    stored = store.put(df)
    assert stored.materializer == "pandas.arrow" and stored.meta["shape"] == [50, 6]
    back = store.get(stored)
    pd.testing.assert_frame_equal(back, df)


def test_arrow_numpy_bytes_round_trip(store) -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", None]})
    assert store.get(store.put(table)).equals(table)
    arr = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    stored = store.put(arr)
    assert stored.materializer == "numpy.npy" and stored.meta == {"shape": [30, 4], "dtype": "float32"}
    np.testing.assert_array_equal(store.get(stored), arr)
    assert store.get(store.put(b"\x00\x01raw")) == b"\x00\x01raw"


def test_numpy_scalars_come_back_as_themselves_without_pickle(store) -> None:
    # numpy.float64 is a float subclass: it used to pass as plain JSON and then fail to encode
    for value in (np.float64(0.25), np.int64(-3), np.bool_(True), np.float32(1.5)):
        stored = store.put(value)
        assert stored.materializer == "numpy.npy"
        out = store.get(stored)
        assert type(out) is type(value) and out == value
    assert store.put(0.25).materializer == "json"


def test_sklearn_model_uses_skops_and_predicts_the_same(store) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.default_rng(0).normal(size=(100, 3))
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, X[:, 0] > 0)
    stored = store.put(model)
    assert stored.materializer == "model" and stored.meta["format"] == "skops"
    np.testing.assert_array_equal(store.get(stored).predict(X), model.predict(X))


def test_small_json_is_inline_and_large_json_is_stored(store) -> None:
    small = {"auc": 0.91, "tags": ["a", "b"], "nested": {"n": 1}}
    stored = store.put(small)
    assert stored.uri is None and stored.inline == small and stored.content_hash == hash_json(small)
    assert store.get(stored) == small
    big = {"values": list(range(1000))}
    stored = store.put(big)
    assert stored.uri is not None and stored.materializer == "json" and store.get(stored) == big


def test_equal_values_are_stored_once(store, tmp_path: Path) -> None:
    arr = np.arange(10_000)
    a, b = store.put(arr), store.put(arr.copy())
    assert a.content_hash == b.content_hash and a.uri == b.uri
    objects = [p for p in (tmp_path / "artifacts" / "objects").rglob("*") if p.is_file()]
    assert len(objects) == 1
    assert not any((tmp_path / "artifacts" / "tmp").iterdir())


def test_concurrent_puts_of_the_same_value(store) -> None:
    df = pd.DataFrame({"x": np.arange(100_000)})
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.put(df))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.content_hash for r in results}) == 1
    pd.testing.assert_frame_equal(store.get(results[0]), df)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_object_is_refused_with_its_name(store, damage: str) -> None:
    stored = store.put(np.arange(1000))
    path = _path(stored)
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[200] ^= 1
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:50])
    else:
        path.unlink()
    with pytest.raises(ArtifactIntegrityError) as err:
        store.get(stored)
    assert path.name in str(err.value) and "--no-cache" in str(err.value)


class Trap:
    """Unpickling this creates a file: proof that a load happened."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("loaded",))


def test_tampered_pickle_is_never_unpickled(store, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.warns(UserWarning, match="has no materializer and was pickled"):
        stored = store.put(Trap(str(marker)))
    assert stored.meta["trusted_only"] is True
    path = _path(stored)
    path.write_bytes(path.read_bytes() + b"x")    # tampered: the hash no longer matches
    with pytest.raises(ArtifactIntegrityError):
        store.get(stored)
    assert not marker.exists()


def test_value_nothing_can_store_is_a_clear_error(store) -> None:
    with pytest.raises(MaterializerNotFound, match="register a materializer"):
        store.put(lambda x: x)
    with pytest.raises(MaterializerNotFound, match="generator"):
        store.put(i for i in range(3))


def test_registry_refuses_silent_override() -> None:
    reg = default_registry()
    with pytest.raises(Conflict, match="already registered"):
        reg.register("json", "x:Y", ["builtins.dict"])
    reg.register("json", "conveyor.store.artifacts.materializers.json_value:JsonMaterializer",
                 ["builtins.dict"], override=True)


def test_custom_materializer_takes_precedence(tmp_path: Path) -> None:
    reg = default_registry()
    reg.register("csv", "tests.store.artifacts.custom:CsvFrame", ["pandas.DataFrame"], first=True)
    store = ArtifactStore(str(tmp_path), materializers=reg)
    df = pd.DataFrame({"a": [1, 2]})
    stored = store.put(df)
    assert stored.materializer == "csv"
    pd.testing.assert_frame_equal(store.get(stored), df)


def test_files_and_folders_round_trip_deterministically(store, tmp_path: Path) -> None:
    folder = tmp_path / "model_dir"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x01" * 100)
    (folder / "sub" / "config.json").write_text('{"k": 1}')
    first = store.put_file(folder)
    (folder / "weights.bin").touch()              # a new mtime does not change the content hash
    assert store.put_file(folder).content_hash == first.content_hash
    loaded = store.get(first)
    assert (loaded / "sub" / "config.json").read_text() == '{"k": 1}'
    out = store.export(first, tmp_path / "exported")
    assert (out / "weights.bin").read_bytes() == b"\x01" * 100
    single = store.put_file(folder / "sub" / "config.json")
    assert store.get(single).read_text() == '{"k": 1}'


def test_memory_filesystem(tmp_path: Path) -> None:
    store = ArtifactStore("memory://conveyor-test-store")
    df = pd.DataFrame({"x": [1.5, 2.5]})
    stored = store.put(df)
    assert stored.uri.startswith("memory://")
    pd.testing.assert_frame_equal(store.get(stored), df)
