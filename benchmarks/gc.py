"""Storage gc: what ``gc --dry-run`` costs per 10,000 artifacts against listing the same objects by hand.

For each root (a local folder; S3 on moto's server), a store of BENCH_ARTIFACTS (default
100,000) small objects is made directly: files written in the folder, or, for S3, objects put
straight into the moto server's in-memory backend before it starts serving (uploading 100,000
objects over HTTP to moto takes about 25 minutes on this machine; listing them is what is
measured). One metadata row per object goes into SQLite: 1,000 runs of BENCH_ARTIFACTS/1,000
artifacts, half of them older than the 30-day retention, a model version registered in every
tenth old run, and 1 % orphan files no row knows.

  gc        ``conveyor.cost.gc.collect(..., dry_run=True)``: one ``find`` of the root, two
            set-based queries over the artifacts and their keepers, the sweep in memory.
  by hand   ``fs.find(root, detail=True)`` on the same root, listing cache cleared: the floor.

Target: gc within 2x of the floor. Each time is the best of BENCH_REPEATS (default 3) rounds, the
two taking turns within a round. Prints one JSON object per root, then a summary.
Run from the repository root: ``python benchmarks/gc.py [local] [s3]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ARTIFACTS = int(os.environ.get("BENCH_ARTIFACTS", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
RUNS = 1000
TARGET = 2.0
DAY = 86400.0


# moto's server in a process of its own, its backend filled through moto's Python API first
MOTO_FILLED = """
import hashlib, sys
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
port, bucket, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
backend = s3_backends["123456789012"]["global"]
backend.create_bucket(bucket, "us-east-1")
for i in range(n):
    data = f"artifact {i}".encode()
    digest = hashlib.sha256(data).hexdigest()
    backend.put_object(bucket, f"objects/{digest[:2]}/{digest}", data)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""


def objects() -> Iterator[tuple[str, bytes]]:
    """(hex digest, bytes) of every object of the benchmark store: ARTIFACTS known ones, then 1 % orphans."""
    for i in range(ARTIFACTS + ARTIFACTS // 100):
        data = f"artifact {i}".encode()
        yield hashlib.sha256(data).hexdigest(), data


@contextlib.contextmanager
def root_for(name: str) -> Iterator[str]:
    """A root URL on store ``name`` holding the objects (S3: moto running, the environment set)."""
    import subprocess

    from tests.conftest import free_port

    if name == "local":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-gc-") as folder:
            for digest, data in objects():
                path = Path(folder) / "objects" / digest[:2] / digest
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            yield folder
        return
    port, bucket = free_port(), f"bench-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen([sys.executable, "-c", MOTO_FILLED, str(port), bucket,
                             str(ARTIFACTS + ARTIFACTS // 100)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
        yield f"s3://{bucket}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def race(*fns: Callable[[], object]) -> list[float]:
    """Best time of each function over REPEATS rounds, taking turns (after one warm-up call each)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [min(t) for t in times]


def populate(store: object, metadata: object) -> dict[str, int]:
    """The metadata rows of the store's objects (the orphans have none)."""
    from sqlalchemy import insert

    from conveyor.store.metadata import tables as t

    now = time.time()
    per_run = max(1, ARTIFACTS // RUNS)
    runs, rows, versions = [], [], []
    for i, (digest, data) in enumerate(objects()):
        if i >= ARTIFACTS:
            break
        run = i // per_run
        old = run % 2 == 0
        at = now - (40 * DAY if old else DAY)
        if i % per_run == 0:
            runs.append(dict(id=f"r{run:015d}", kind="pipeline", pipeline_name=f"p{run % 10}", status="succeeded",
                             tags={}, created_at=at, started_at=at, ended_at=at + 60))
        rows.append(dict(id=f"a{i:015d}", content_hash=f"sha256:{digest}", materializer="bytes",
                         materializer_version="1", type_name="bytes", size=len(data),
                         uri=store.uri_of(store.object_path(f"sha256:{digest}")), meta={}, name="out",
                         run_id=f"r{run:015d}", created_at=at))
        if old and run % 20 == 0 and i % per_run == 0:
            versions.append(dict(id=f"v{run:015d}", model="m", version=len(versions) + 1, artifact_id=f"a{i:015d}",
                                 run_id=f"r{run:015d}", approval="pending", deleted=False, created_at=at))
    with metadata.artifacts.write() as conn:
        conn.execute(insert(t.models).values(name="m", protected_aliases=[], created_at=now))
        conn.execute(insert(t.runs), runs)
        for k in range(0, len(rows), 20000):
            conn.execute(insert(t.artifacts), rows[k:k + 20000])
        conn.execute(insert(t.model_versions), versions)
    return {"objects": ARTIFACTS + ARTIFACTS // 100, "rows": len(rows), "runs": len(runs), "versions": len(versions)}


def measure(name: str, url: str, db: Path) -> dict[str, object]:
    from conveyor.cost.gc import collect
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

    store = ArtifactStore(url)
    metadata = MetadataStore(f"sqlite:///{db}")
    made = populate(store, metadata)
    fs, base = store.fs, store.base
    outcome: dict[str, object] = {}

    def gc() -> None:
        report = collect(metadata, [store], older_than_s=30 * DAY, dry_run=True)
        outcome.update(report.to_dict())

    def by_hand() -> None:
        fs.invalidate_cache(base)
        found = fs.find(base, detail=True)
        assert len(found) == made["objects"], len(found)

    ours, hand = race(gc, by_hand)
    per = ARTIFACTS / 10_000
    root = outcome["roots"][0]
    assert root["examined"] == made["objects"], root
    metadata.close()
    return {"root": name, **made, "gc_dry_run_s": round(ours, 3), "by_hand_find_s": round(hand, 3),
            "gc_s_per_10k": round(ours / per, 4), "find_s_per_10k": round(hand / per, 4),
            "ratio": round(ours / hand, 3), "target": TARGET, "within_target": ours / hand <= TARGET,
            "would_remove_rows": outcome["rows_deleted"], "would_remove_objects": outcome["objects_deleted"],
            "orphans": root["orphans_deleted"]}


def main(argv: list[str]) -> None:
    names = argv or ["local", "s3"]
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-gc-db-") as folder, root_for(name) as url:
            result = measure(name, url, Path(folder) / "metadata.db")
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"summary": {r["root"]: r["ratio"] for r in results},
                      "all_within_target": all(r["within_target"] for r in results)}))


if __name__ == "__main__":
    main(sys.argv[1:])
