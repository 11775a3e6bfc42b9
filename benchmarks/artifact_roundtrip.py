"""Artifact round trip of a 1,000,000 x 10 float DataFrame through each artifact root.

For each root (a local folder, S3 on moto's server, GCS on gcp-storage-emulator, Azure Blob on
Azurite; the emulators start as the tests start them, from tests/store/emulators.py):
  store   ``ArtifactStore.put(df)`` then ``ArtifactStore.get(stored)`` (hash-verified, content-addressed)
  by hand the same frame as Parquet written by pyarrow to a buffer, ``fs.pipe`` to the root,
          ``fs.cat`` back and ``pyarrow.parquet`` read to pandas
Each is timed in this process (median of BENCH_REPEATS, default 3, after one warm-up), with a
fresh object each time (one changed cell, so the store cannot deduplicate). Prints one JSON object
per root with both medians and their ratio (target: at most 1.2), then a summary line.

Run from the repository root: ``python benchmarks/artifact_roundtrip.py [local s3 gs az]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
TARGET = 1.2


def make_frame(rows: int, seed: int) -> object:
    import numpy as np
    import pandas as pd

    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, 10)), columns=[f"c{i}" for i in range(10)])


@contextlib.contextmanager
def root_for(name: str) -> Iterator[str]:
    """A fresh, empty root URL on store ``name``, its emulator running and its environment set."""
    from tests.store import emulators

    if name == "local":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
            yield folder
        return
    start, scheme = {"s3": (emulators.moto_s3, "s3"), "gs": (emulators.gcs, "gs"),
                     "az": (emulators.azurite, "az")}[name]
    with start() as emulator:
        os.environ.update(emulator.environment)
        import fsspec

        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        fsspec.filesystem(scheme, skip_instance_cache=True).mkdir(bucket)
        yield f"{scheme}://{bucket}"


def timed(fn: Callable[[int], object], repeats: int) -> float:
    fn(-1)                                           # warm-up: imports, connections, buckets
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, url: str) -> dict[str, object]:
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.store.artifacts import ArtifactStore

    frame = make_frame(ROWS, 100)
    calls = iter(range(1, 1 << 30))

    def fresh() -> object:
        # one changed cell per call: new bytes every time, so the store never deduplicates a put
        frame.iat[0, 0] = float(next(calls))
        return frame
    store = ArtifactStore(f"{url}/store")
    fs, base = fsspec.core.url_to_fs(f"{url}/by-hand")
    fs.makedirs(base, exist_ok=True)

    def through_store(i: int) -> None:
        back = store.get(store.put(fresh()))
        assert back.shape == (ROWS, 10)

    def by_hand(i: int) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(fresh(), preserve_index=False), buf)
        path = f"{base}/{uuid.uuid4().hex}.parquet"
        fs.pipe(path, buf.getvalue())
        back = pq.read_table(pa.BufferReader(fs.cat(path))).to_pandas()
        assert back.shape == (ROWS, 10)

    # interleaved, so a noisy neighbour on the machine weighs on both alike
    hand = timed(by_hand, REPEATS)
    ours = timed(through_store, REPEATS)
    hand = min(hand, timed(by_hand, REPEATS))
    ours = min(ours, timed(through_store, REPEATS))
    size = store.put(fresh()).size
    return {"root": name, "rows": ROWS, "bytes": size, "store_s": round(ours, 3), "by_hand_s": round(hand, 3),
            "ratio": round(ours / hand, 3), "target": TARGET, "within_target": ours / hand <= TARGET}


def main(argv: list[str]) -> None:
    names = argv or ["local", "s3", "gs", "az"]
    results = []
    for name in names:
        with root_for(name) as url:
            result = measure(name, url)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"summary": {r["root"]: r["ratio"] for r in results},
                      "all_within_target": all(r["within_target"] for r in results)}))


if __name__ == "__main__":
    main(sys.argv[1:])
