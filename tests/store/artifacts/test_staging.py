"""Staging on an object store (fsspec's memory filesystem, whose uploads are atomic like S3's):
small objects go straight to their final name, big ones stream through a temporary object."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from conveyor.store.artifacts import ArtifactStore
from conveyor.store.artifacts import staging


class Exploding:
    """A value whose materializer fails half-way through writing it."""


class ExplodingMaterializer:
    name = "exploding"
    version = "1"
    trusted_only = False

    def handles(self, value: object) -> bool:
        return True

    def save(self, value: object, out) -> dict:
        out.write(b"x" * 5000)
        raise RuntimeError("the disk of the serialiser caught fire")

    def load(self, data: bytes, meta: dict) -> object:
        raise AssertionError("never loaded")


@pytest.fixture
def store() -> ArtifactStore:
    from conveyor.store.artifacts import default_registry

    registry = default_registry()
    registry.register("exploding", f"{__name__}:ExplodingMaterializer", [f"{__name__}.Exploding"], first=True)
    return ArtifactStore(f"memory://stage-{uuid.uuid4().hex[:8]}", materializers=registry)


def _keys(store: ArtifactStore) -> list[str]:
    return sorted(store.fs.find(store.root.split("://", 1)[1]))


@pytest.mark.parametrize("limit", [staging.IN_MEMORY_MAX_BYTES, 1000], ids=["in-memory", "streamed"])
def test_objects_arrive_whole_and_leave_no_temporary(store, limit, monkeypatch) -> None:
    monkeypatch.setattr(staging, "IN_MEMORY_MAX_BYTES", limit)
    values = np.arange(50_000, dtype=float)
    stored = store.put(values)
    assert store.get(stored).tolist() == values.tolist()
    assert store.put(values) == stored                             # deduplicated
    assert [k.rsplit("/", 1)[1] for k in _keys(store)] == [stored.content_hash.split(":")[1]]


@pytest.mark.parametrize("limit", [staging.IN_MEMORY_MAX_BYTES, 1000], ids=["in-memory", "streamed"])
def test_a_failed_write_leaves_nothing(store, limit, monkeypatch) -> None:
    monkeypatch.setattr(staging, "IN_MEMORY_MAX_BYTES", limit)
    with pytest.raises(RuntimeError, match="caught fire"):
        store.put(Exploding())
    assert _keys(store) == []
