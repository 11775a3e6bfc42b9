"""Run with a peer's own Python: fits the benchmark's model there and saves it in the peer's format.

Usage: python peer_setup.py mlflow|mlserver OUT_DIR HTTP_PORT
The model is the same as the one Conveyor and the floor serve: a seeded 20-feature logistic regression.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

FEATURES = 20


def fit() -> LogisticRegression:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, FEATURES))
    return LogisticRegression().fit(X, X[:, 0] + rng.normal(size=5000) > 0)


def main() -> None:
    kind, out, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    model = fit()
    if kind == "mlflow":
        import mlflow.sklearn

        mlflow.sklearn.save_model(model, str(out / "model"))
    elif kind == "mlserver":
        import joblib

        folder = out / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, folder / "model.joblib")
        (folder / "model-settings.json").write_text(json.dumps({
            "name": "bench", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"}}))
        (out / "settings.json").write_text(json.dumps({
            "http_port": port, "grpc_port": port + 1, "metrics_port": port + 2, "parallel_workers": 0,
            "host": "127.0.0.1"}))
    else:
        sys.exit(f"unknown peer {kind}")


if __name__ == "__main__":
    main()
