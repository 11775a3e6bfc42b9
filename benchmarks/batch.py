"""Batch scoring throughput: 1,000,000 rows x 20 features, Parquet to Parquet, logistic regression.

Floor: the same work by hand in one process (pyarrow read -> numpy -> predict -> pyarrow write).
Prints one JSON object per run with rows/s and the ratio to the floor.
"""

from __future__ import annotations

import functools
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS, FEATURES = 1_000_000, 20


def make_model(path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, FEATURES))
    model = LogisticRegression().fit(X, X[:, 0] + rng.normal(size=5000) > 0)
    path.write_bytes(pickle.dumps(model))


def load(path: str) -> tuple[object, str]:
    return pickle.loads(Path(path).read_bytes()), "bench:1"


def floor(src: Path, dst: Path, model_path: Path) -> float:
    start = time.perf_counter()
    model, _ = load(str(model_path))
    table = pq.read_table(src)
    X = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)])
    table = table.append_column("prediction", pa.array(model.predict(X)))
    pq.write_table(table, dst)
    return time.perf_counter() - start


def main() -> None:
    from conveyor.serving.batch import score_batch

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        rng = np.random.default_rng(1)
        src = folder / "input.parquet"
        pq.write_table(pa.table({f"f{i}": rng.normal(size=ROWS) for i in range(FEATURES)}), src,
                       row_group_size=100_000)
        model_path = folder / "model.pkl"
        make_model(model_path)
        base = floor(src, folder / "floor.parquet", model_path)
        print(json.dumps({"tool": "floor", "rows": ROWS, "seconds": round(base, 3), "rows_per_s": round(ROWS / base),
                          "ratio_to_floor": 1.0}))
        for workers in (1, 2):
            t = time.perf_counter()
            score_batch(functools.partial(load, str(model_path)), str(src), str(folder / f"out{workers}"),
                        model_version="bench:1", workers=workers, chunk_rows=100_000, progress=False)
            s = time.perf_counter() - t
            print(json.dumps({"tool": "conveyor", "workers": workers, "rows": ROWS, "seconds": round(s, 3),
                              "rows_per_s": round(ROWS / s), "ratio_to_floor": round(base / s, 3)}))


if __name__ == "__main__":
    main()
