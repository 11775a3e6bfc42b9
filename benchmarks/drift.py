"""Drift computation at 100,000 and 1,000,000 rows × 25 columns (7 shifted), against a hand-written
NumPy floor, SciPy's own functions and, when their virtualenvs exist, Evidently and NannyML
(``bash benchmarks/peers/install_peers.sh drift``). Each contender runs in a fresh process; prints one
JSON object per (rows, contender): seconds, peak memory added, columns flagged, ratios to the floor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from drift_data import SHIFTED, make_table  # noqa: E402


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_ROWS", "100000,1000000").split(",")]
    work = Path(tempfile.mkdtemp())
    peers = {name: HERE / "peers" / ".venvs" / name / "bin" / "python" for name in ("evidently", "nannyml")}
    for rows in sizes:
        ref, cur = work / f"ref{rows}.parquet", work / f"cur{rows}.parquet"
        make_table(rows, 1, False).to_parquet(ref)
        make_table(rows, 2, True).to_parquet(cur)
        results = {}
        contenders = [("floor", sys.executable), ("conveyor", sys.executable), ("scipy", sys.executable)]
        contenders += [(n, str(p)) for n, p in peers.items() if p.exists()]
        for name, python in contenders:
            proc = subprocess.run([python, str(HERE / "drift_runner.py"), name, str(ref), str(cur)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
            if proc.returncode != 0:
                print(json.dumps({"rows": rows, "contender": name, "error": proc.stderr.strip()[-500:]}))
                continue
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        base = results.get("floor", {}).get("seconds")
        for name, r in results.items():
            found = set(r["flagged"])
            print(json.dumps({"rows": rows, **r, "true_found": len(found & set(SHIFTED)),
                              "false_alarms": sorted(found - set(SHIFTED)), "exact": found == set(SHIFTED),
                              "time_ratio_to_floor": round(r["seconds"] / base, 2) if base else None}))
        ref.unlink()
        cur.unlink()


if __name__ == "__main__":
    main()
