"""The drift report as users run it: ``conveyor monitor report --reference REF --current CUR`` on two
Parquet files (1,000,000 rows × 25 columns by default, 7 columns shifted), whole process, files in and
report out (JSON on stdout and the HTML report), against the floor: a fresh Python process that reads
the same files with pyarrow and tests every column with SciPy (``ks_2samp`` for numbers,
``chi2_contingency`` on the category counts for the rest). Rounds alternate the two; prints one JSON
object per round and a summary with medians, spread and the ratio.

Usage: python benchmarks/drift_cli.py            (BENCH_ROWS=1000000 BENCH_ROUNDS=5)
       python benchmarks/drift_cli.py --floor REF CUR   (the floor on its own)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def floor(ref_path: str, cur_path: str) -> list[str]:
    import numpy as np
    import pyarrow.parquet as pq
    from scipy import stats

    ref, cur = pq.read_table(ref_path), pq.read_table(cur_path)
    flagged = []
    for name in ref.column_names:
        a, b = ref.column(name), cur.column(name)
        if a.type.id in (b.type.id,) and str(a.type) in ("double", "float", "int64", "int32"):
            p = stats.ks_2samp(a.to_numpy(), b.to_numpy()).pvalue
        else:
            va, vb = a.value_counts(), b.value_counts()
            ca = dict(zip(va.field("values").to_pylist(), va.field("counts").to_pylist(), strict=True))
            cb = dict(zip(vb.field("values").to_pylist(), vb.field("counts").to_pylist(), strict=True))
            keys = sorted(set(ca) | set(cb))
            p = stats.chi2_contingency(np.array([[ca.get(k, 0) for k in keys], [cb.get(k, 0) for k in keys]])).pvalue
        if p < 0.01:
            flagged.append(name)
    return flagged


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr[-800:]}")
    return seconds, proc.stdout


def main() -> None:
    sys.path.insert(0, str(HERE))
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drift_data import SHIFTED, make_table

    rows = int(os.environ.get("BENCH_ROWS", "1000000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    work = Path(tempfile.mkdtemp(prefix="drift-cli-"))
    ref, cur, html = work / "ref.parquet", work / "cur.parquet", work / "report.html"
    pq.write_table(pa.Table.from_pandas(make_table(rows, 1, False), preserve_index=False), ref)
    pq.write_table(pa.Table.from_pandas(make_table(rows, 2, True), preserve_index=False), cur)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "CONVEYOR_HOME": str(work / "home"), "NO_COLOR": "1"}
    contenders = {
        "floor": [sys.executable, str(Path(__file__).resolve()), "--floor", str(ref), str(cur)],
        "conveyor": [sys.executable, "-m", "conveyor", "monitor", "report", "--reference", str(ref),
                     "--current", str(cur), "--json", "-o", str(html)],
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    flagged: dict[str, list[str]] = {}
    for i in range(rounds + 1):                     # round 0 warms the page cache and the bytecode
        for name, cmd in contenders.items():
            seconds, out = timed(cmd, env)
            if name == "conveyor":
                flagged[name] = sorted(json.loads(out)["drifted_columns"])
            else:
                flagged[name] = sorted(json.loads(out.strip().splitlines()[-1]))
            if i:
                times[name].append(seconds)
                print(json.dumps({"round": i, "contender": name, "seconds": round(seconds, 3)}))
    med = {n: statistics.median(t) for n, t in times.items()}
    print(json.dumps({"rows": rows, "columns": 25, "rounds": rounds,
                      "median_s": {n: round(v, 3) for n, v in med.items()},
                      "min_s": {n: round(min(t), 3) for n, t in times.items()},
                      "max_s": {n: round(max(t), 3) for n, t in times.items()},
                      "ratio_to_floor": round(med["conveyor"] / med["floor"], 3),
                      "flagged_exact": {n: f == sorted(SHIFTED) for n, f in flagged.items()},
                      "target": "<= 1.2"}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--floor":
        print(json.dumps(floor(sys.argv[2], sys.argv[3])))
    else:
        main()
