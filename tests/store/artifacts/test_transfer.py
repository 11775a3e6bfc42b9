"""Copying artifacts between stores: streamed, verified on arrival, resumable (local folders here;
tests/store/test_store_copy.py runs the same between emulators)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import ArtifactIntegrityError
from conveyor.store.artifacts import ArtifactStore, StoredArtifact
from conveyor.store.artifacts.hashing import digest
from conveyor.store.artifacts.staging import CHUNK_BYTES
from conveyor.store.artifacts.transfer import transfer


class Recorder:
    """A TransferProgress that records what it hears and can stop the copy after ``stop_after`` bytes."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.chunks: list[int] = []
        self.done: list[tuple[str, bool]] = []
        self.started: tuple[int, int] | None = None
        self.closed = False
        self.stop_after = stop_after

    def start(self, objects: int, total_bytes: int) -> None:
        self.started = (objects, total_bytes)

    def advance(self, nbytes: int) -> None:
        self.chunks.append(nbytes)
        if self.stop_after is not None and sum(self.chunks) >= self.stop_after:
            raise KeyboardInterrupt      # what Ctrl-C does in the middle of an object

    def finished(self, stored: StoredArtifact, copied: bool) -> None:
        self.done.append((stored.content_hash, copied))

    def close(self) -> None:
        self.closed = True


def _objects(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in Path(store.root, "objects").rglob("*") if p.is_file())


def _tmp(store: ArtifactStore) -> list[Path]:
    folder = Path(store.root, "tmp")
    return list(folder.iterdir()) if folder.exists() else []


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ArtifactStore, ArtifactStore]:
    return ArtifactStore(str(tmp_path / "src")), ArtifactStore(str(tmp_path / "dst"))


def test_copies_each_object_once_and_a_second_transfer_skips_them(stores) -> None:
    src, dst = stores
    arrays = [src.put(np.arange(20_000, dtype=float) * i) for i in range(3)]
    small = src.put({"a": 1})                                   # inline: nothing to move
    report = transfer(src, dst, [*arrays, arrays[0], small])
    assert (report.copied, report.skipped, report.inline) == (3, 0, 1)
    assert report.bytes_copied == sum(a.size for a in arrays)
    for i, a in enumerate(arrays):
        placed = report.artifacts[a.content_hash]
        assert placed.uri == dst.uri_of(dst.object_path(a.content_hash)) and placed.uri != a.uri
        assert dst.get(placed).tolist() == (np.arange(20_000, dtype=float) * i).tolist()
    again = transfer(src, dst, arrays)
    assert (again.copied, again.skipped, again.bytes_skipped) == (0, 3, report.bytes_copied)
    assert not _tmp(dst)


def test_a_large_object_moves_in_chunks(stores) -> None:
    src, dst = stores
    big = src.put(np.random.default_rng(0).bytes(int(CHUNK_BYTES * 2.5)))
    seen = Recorder()
    report = transfer(src, dst, [big], progress=seen)
    assert report.copied == 1 and seen.started == (1, big.size) and seen.closed
    assert len(seen.chunks) == 3 and max(seen.chunks) == CHUNK_BYTES and sum(seen.chunks) == big.size
    assert digest(Path(dst.object_path(big.content_hash)).read_bytes()) == big.content_hash


def test_a_corrupted_source_object_is_refused_and_never_appears_at_the_destination(stores) -> None:
    src, dst = stores
    good, bad = src.put(np.arange(30_000, dtype=float)), src.put(np.ones(30_000))
    path = Path(src.object_path(bad.content_hash))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                                            # same size, one bit flipped
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="corrupted or was changed.*not copied"):
        transfer(src, dst, [good, bad])
    assert _objects(dst) == [good.content_hash.split(":")[1]]   # the good one is whole; the bad one absent
    assert not _tmp(dst)


def test_a_missing_source_object_is_named(stores) -> None:
    src, dst = stores
    gone = src.put(np.arange(30_000, dtype=float))
    Path(src.object_path(gone.content_hash)).unlink()
    with pytest.raises(ArtifactIntegrityError, match="missing from the store"):
        transfer(src, dst, [gone])


def test_an_interrupted_transfer_leaves_no_partial_object_and_resumes_with_what_is_missing(stores) -> None:
    src, dst = stores
    items = [src.put(np.random.default_rng(i).bytes(CHUNK_BYTES + 1000)) for i in range(3)]
    # stop in the middle of the second object, after its first chunk
    with pytest.raises(KeyboardInterrupt):
        transfer(src, dst, items, progress=Recorder(stop_after=items[0].size + CHUNK_BYTES))
    assert _objects(dst) == [items[0].content_hash.split(":")[1]]
    assert not _tmp(dst)                                        # the half-written temporary was removed
    seen = Recorder()
    resumed = transfer(src, dst, items, progress=seen)
    assert (resumed.copied, resumed.skipped) == (2, 1)
    assert seen.done == [(items[0].content_hash, False), (items[1].content_hash, True),
                             (items[2].content_hash, True)]
    assert sorted(_objects(dst)) == sorted(i.content_hash.split(":")[1] for i in items)


def test_a_damaged_copy_at_the_destination_is_replaced_unless_size_is_trusted(stores) -> None:
    src, dst = stores
    item = src.put(np.arange(30_000, dtype=float))
    transfer(src, dst, [item])
    path = Path(dst.object_path(item.content_hash))
    path.write_bytes(b"\0" * item.size)                         # same size, wrong bytes
    assert transfer(src, dst, [item], verify_existing=False).skipped == 1
    repaired = transfer(src, dst, [item])
    assert repaired.copied == 1 and digest(path.read_bytes()) == item.content_hash


def test_a_progress_bar_shows_objects_and_bytes(stores, capsys) -> None:
    src, dst = stores
    items = [src.put(np.arange(30_000, dtype=float) + i) for i in range(2)]
    transfer(src, dst, items[:1])
    capsys.readouterr()
    transfer(src, dst, items, progress=True)           # one already there, one copied
    err = capsys.readouterr().err
    total = sum(i.size for i in items) / 1000
    assert "copying 2/2" in err and f"{total:.1f}/{total:.1f} kB" in err
