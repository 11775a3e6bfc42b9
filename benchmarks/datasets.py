"""Dataset versioning: hashing throughput, re-versioning unchanged files, and a diff by key.

  hashing     a file set (BENCH_HASH_FILES files, BENCH_HASH_MB MiB in all, in the page cache) versioned
              by ``build_manifest`` with SHA-256 against ``sha256sum``, and with BLAKE3 (the
              ``blake3`` extra) against ``b3sum`` (Debian packages; skipped when absent), on the same
              bytes; the bare ``blake3`` wheel alone for reference. Target: at least 0.8x each peer.
  table       ``register_dataset`` of a 1,000,000-row Arrow table: the IPC bytes hashed while written.
  unchanged   re-versioning BENCH_SMALL_FILES small files none of which changed: one listing, no reads.
  diff        two 1,000,000-row versions (1% removed, 1% added, 1% changed) diffed by key with
              ``diff_tables`` against ``pandas.merge(..., how="outer", indicator=True)`` on the same
              frames (built beforehand). Target: faster than the merge. For scale, the same diff by
              hand in pandas (the merge, then comparing every column of the matched rows).

Each time is the best of BENCH_REPEATS (default 5) rounds after a warm-up, contenders taking turns
within a round so a busy machine slows them alike. Prints one JSON object.
Run from the repository root: ``python benchmarks/datasets.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
HASH_FILES = int(os.environ.get("BENCH_HASH_FILES", "8"))
HASH_MB = int(os.environ.get("BENCH_HASH_MB", "512"))
SMALL_FILES = int(os.environ.get("BENCH_SMALL_FILES", "20000"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))


def timed(fn: Callable[[], object]) -> float:
    return race(fn)[0]


def race(*fns: Callable[[], object]) -> list[float]:
    """Best time of each function over REPEATS rounds, the functions taking turns within each round,
    so a busy machine slows every contender alike (after one warm-up call each)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [min(t) for t in times]


def hashing(folder: Path) -> dict[str, object]:
    import numpy as np

    from conveyor.data.manifest import build_manifest

    folder.mkdir()
    per_file = (HASH_MB << 20) // HASH_FILES
    rng = np.random.default_rng(0)
    for i in range(HASH_FILES):
        (folder / f"part-{i:03d}.bin").write_bytes(rng.bytes(per_file))
    files = sorted(str(p) for p in folder.iterdir())
    total = per_file * HASH_FILES
    mb = total / (1 << 20)
    out: dict[str, object] = {"bytes": total, "files": HASH_FILES}
    try:
        import blake3

        def b3_wheel() -> None:     # the bare wheel, file after file, every core on each (as b3sum does)
            for f in files:
                blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(f).hexdigest()

        with_blake3 = True
    except ImportError:
        with_blake3 = False
    tools = [t for t in ("sha256sum", "b3sum") if shutil.which(t)]
    ours = [lambda: build_manifest(str(folder))] + ([lambda: build_manifest(str(folder), algorithm="blake3"),
                                                     b3_wheel] if with_blake3 else [])
    times = race(*ours, *[lambda tool=tool: subprocess.run([tool, *files], check=True, capture_output=True)
                          for tool in tools])
    out["blake3_wheel_mb_s"] = round(mb / times[2], 1) if with_blake3 else None
    sha, b3 = times[0], (times[1] if with_blake3 else None)
    peers = dict(zip(tools, times[len(ours):], strict=True))
    out["conveyor_sha256_mb_s"] = round(mb / sha, 1)
    out["conveyor_blake3_mb_s"] = round(mb / b3, 1) if b3 else None
    for tool in ("sha256sum", "b3sum"):
        out[f"{tool}_mb_s"] = round(mb / peers[tool], 1) if tool in peers else None
    if "sha256sum" in peers:
        out["ratio_sha256_vs_sha256sum"] = round(peers["sha256sum"] / sha, 3)
    if "b3sum" in peers and b3:
        out["ratio_blake3_vs_b3sum"] = round(peers["b3sum"] / b3, 3)
    out["target_ratio"] = 0.8
    return out


def table_registration(home: Path) -> dict[str, object]:
    import numpy as np
    import pyarrow as pa

    from conveyor.config import load_settings
    from conveyor.data.datasets import DatasetCatalog
    from conveyor.runtime.client import Client

    os.environ["CONVEYOR_HOME"] = str(home)
    client = Client(load_settings())
    catalog = DatasetCatalog(client.metadata, client.artifacts, "bench")
    rng = np.random.default_rng(1)
    base = {f"c{i}": rng.normal(size=ROWS) for i in range(10)}
    counter = iter(range(1_000_000))

    def register() -> None:   # a changed cell each time: every call writes and hashes the whole table
        cols = dict(base)
        cols["c0"] = cols["c0"].copy()
        cols["c0"][0] = next(counter)
        catalog.register("bench", pa.table(cols), profile=False)

    t = timed(register)
    size = pa.table(base).nbytes / (1 << 20)
    client.close()
    return {"rows": ROWS, "mb": round(size, 1), "seconds": round(t, 3), "mb_s": round(size / t, 1)}


def unchanged(folder: Path) -> dict[str, object]:
    from conveyor.data.manifest import build_manifest

    folder.mkdir()
    for i in range(SMALL_FILES):
        (folder / f"f{i:06d}.json").write_text(f'{{"i": {i}}}\n')
    first_start = time.perf_counter()
    first = build_manifest(str(folder))
    first_s = time.perf_counter() - first_start
    again = timed(lambda: build_manifest(str(folder), previous=first.table))
    m = build_manifest(str(folder), previous=first.table)
    assert m.hashed == 0 and m.content_hash == first.content_hash
    return {"files": SMALL_FILES, "first_seconds": round(first_s, 3), "again_seconds": round(again, 3),
            "again_files_read": m.hashed, "again_files_per_s": round(SMALL_FILES / again)}


def diff() -> dict[str, object]:
    import numpy as np
    import pyarrow as pa

    from conveyor.data.diff import diff_tables

    rng = np.random.default_rng(2)
    n = ROWS
    old = pa.table({"id": np.arange(n), **{f"x{i}": rng.normal(size=n) for i in range(5)},
                    "plan": rng.choice(["free", "pro", "team"], n)})
    keep = np.sort(rng.choice(n, n - n // 100, replace=False))
    new = old.take(keep)
    x0 = new.column("x0").to_numpy().copy()
    x0[rng.choice(len(keep), n // 100, replace=False)] += 1.0
    new = new.set_column(1, "x0", pa.array(x0))
    extra = old.slice(0, n // 100).set_column(0, "id", pa.array(np.arange(n, n + n // 100)))
    new = pa.concat_tables([new, extra])
    a_df, b_df = old.to_pandas(), new.to_pandas()
    def pandas_diff() -> int:     # what the diff reports, by hand in pandas: the merge, then every column
        m = a_df.merge(b_df, on="id", how="outer", indicator=True)
        both = m[m["_merge"] == "both"]
        changed = np.zeros(len(both), dtype=bool)
        for col in [c for c in a_df.columns if c != "id"]:
            x, y = both[f"{col}_x"], both[f"{col}_y"]
            changed |= (x != y).to_numpy() & ~(x.isna() & y.isna()).to_numpy()
        return int(changed.sum())

    ours, merge, by_hand = race(lambda: diff_tables(old, new, key="id"),
                                lambda: a_df.merge(b_df, on="id", how="outer", indicator=True), pandas_diff)
    result = diff_tables(old, new, key="id")
    assert pandas_diff() == result.changed
    return {"rows": n, "added": result.added, "removed": result.removed, "changed": result.changed,
            "conveyor_s": round(ours, 3), "pandas_merge_indicator_s": round(merge, 3),
            "speedup_vs_pandas": round(merge / ours, 2), "target_speedup": 1.0,
            "pandas_merge_and_compare_s": round(by_hand, 3), "speedup_vs_pandas_full_diff": round(by_hand / ours, 2)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-datasets-") as tmp:
        root = Path(tmp)
        report = {"benchmark": "datasets", "repeats": REPEATS, "cpus": os.cpu_count(),
                  "hashing": hashing(root / "hash"), "table": table_registration(root / "home"),
                  "unchanged": unchanged(root / "small"), "diff": diff()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
