"""From the prediction log to a drift report and, once labels arrive, to accuracy per window — via the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor.config import load_settings
from conveyor.runtime.client import Client
from conveyor.serving.prediction_log import PredictionLog
from conveyor.serving.schema import Batch
from tests.cli.test_cli import cli  # noqa: F401  (fixture)

FEATURES = ["x0", "x1", "x2"]


def _traffic(home: Path, n_requests: int, shift: float, seed: int) -> list[tuple[str, int, int]]:
    """Log ``n_requests`` one-row predictions as the server does; return (request id, prediction, truth)."""
    client = Client(load_settings(env={"CONVEYOR_HOME": str(home)}))
    model = client.registry.load("churn:1")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_requests, 3))
    X[:, 0] += shift
    truth = (X[:, 1] > 0).astype(int)         # the world changed: x1 decides now, not x0
    preds = model.predict(X)
    log = PredictionLog(client.settings.artifact_root, interval_s=60)
    now = time.time()
    out = []
    for i in range(n_requests):
        batch = Batch(None, 1, matrix=X[i:i + 1], names=FEATURES, dtypes=["float64"] * 3)
        rid = f"req-{seed}-{i}"
        log.record(request_id=rid, ts=now - (n_requests - i) * 0.5, endpoint="churn-api", model="churn", version=1,
                   shadow=False, latency_ms=1.0, batch=batch, prediction=preds[i:i + 1])
        out.append((rid, int(preds[i]), int(truth[i])))
    log.close()
    client.close()
    return out


def _register(home: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    client = Client(load_settings(env={"CONVEYOR_HOME": str(home)}))
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(4_000, 3)), columns=FEATURES)
    model = LogisticRegression().fit(X.to_numpy(), (X["x0"] > 0).astype(int))
    client.registry.register("churn", model, data=X)
    client.close()


def test_drift_report_and_performance_from_the_log(cli, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    _register(home)
    served = _traffic(home, 3_000, shift=0.8, seed=1)

    report = json.loads(cli("monitor", "report", "churn-api", "--window", "24h", "-o", "r.html", "--json").stdout)
    assert report["meta"]["reference"] == "churn:1"
    assert report["drifted_columns"] == ["x0"] and report["current_rows"] == 3_000
    assert report["prediction"]["drifted"]                    # more rows now cross the x0 boundary
    page = (tmp_path / "r.html").read_text()
    assert "x0" in page and "<svg" in page
    human = cli("monitor", "report", "churn-api").stdout
    assert "drifted" in human and "x0" in human

    labels = pd.DataFrame({"rid": [r for r, _, _ in served[:2_000]], "y": [t for _, _, t in served[:2_000]]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    stored = json.loads(cli("monitor", "labels", "labels.csv", "--id-column", "rid", "--label-column", "y",
                            "--json").stdout)
    assert stored["labels"] == 2_000
    perf = json.loads(cli("monitor", "performance", "churn-api", "--every", "10m", "--json").stdout)
    preds = np.array([p for _, p, _ in served[:2_000]])
    truth = np.array([t for _, _, t in served[:2_000]])
    assert perf["labelled"] == 2_000 and perf["rows"] == 3_000
    assert abs(perf["metrics"]["accuracy"] - float((preds == truth).mean())) < 1e-12
    assert sum(w["labelled"] for w in perf["windows"]) == 2_000 and len(perf["windows"]) >= 2


def test_clear_errors_for_unknown_endpoint_and_missing_profile(cli, tmp_path: Path) -> None:  # noqa: F811
    missing = cli("monitor", "report", "nope", ok=False)
    assert missing.returncode != 0 and "logged no predictions" in missing.stderr
    quiet = json.loads(cli("monitor", "performance", "nope", "--json").stdout)
    assert quiet["rows"] == 0 and quiet["labelled"] == 0 and quiet["metrics"] == {}
    client = Client(load_settings(env={"CONVEYOR_HOME": str(tmp_path / "home")}))
    from sklearn.linear_model import LogisticRegression

    client.registry.register("bare", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    client.close()
    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(tmp_path / "cur.parquet")
    bad = cli("monitor", "report", "--current", "cur.parquet", "--reference", "bare:1", ok=False)
    assert "has no reference profile" in bad.stderr


def test_target_drift_uses_late_labels_and_the_registered_target(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from conveyor.monitoring.api import drift_report
    from conveyor.monitoring.sources import ingest_labels

    home = tmp_path / "home"
    client = Client(load_settings(env={"CONVEYOR_HOME": str(home)}))
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(4_000, 3)), columns=FEATURES)
    y = (X["x0"] > 1.0).astype(int)                         # churn was rare: 16%
    client.registry.register("churn", LogisticRegression().fit(X.to_numpy(), y), data=X, target=y)
    stored = client.registry.profile("churn:1")
    assert stored.columns["target"].kind == "categorical" and stored.columns["prediction"].kind == "categorical"
    assert dict(zip(stored.columns["target"].categories, stored.columns["target"].counts.tolist(),
                    strict=True)) == {"0": int((y == 0).sum()), "1": int((y == 1).sum())}
    served = _traffic(home, 2_000, shift=0.0, seed=5)        # truth now x1 > 0: churn at 50%
    ingest_labels(client.settings.artifact_root, pd.DataFrame({"request_id": [r for r, _, _ in served[:1_500]],
                                                               "label": [t for _, _, t in served[:1_500]]}))
    report = drift_report("churn-api", window="24h", client=client)
    assert report.target is not None and report.target.drifted and report.target.current_rows == 1_500
    assert report.target.kind == "categorical" and "chi2_pvalue" in report.target.statistics
    assert report.prediction is not None and report.prediction.kind == "categorical"
    assert "ks_statistic" not in report.prediction.statistics
    assert "target" not in report.drifted_columns          # not a feature: it does not count towards the share
    client.close()


def test_drift_report_as_a_pipeline_step_branches_on_its_verdict(client, tmp_path: Path) -> None:
    import conveyor as cv
    from conveyor.monitoring.steps import drift_report

    rng = np.random.default_rng(1)
    pd.DataFrame({"a": rng.normal(size=3_000)}).to_parquet(tmp_path / "ref.parquet")
    pd.DataFrame({"a": rng.normal(1.0, 1, size=3_000)}).to_parquet(tmp_path / "cur.parquet")

    @cv.step
    def retrain(report: dict) -> str:
        return "retrained on " + ",".join(report["drifted_columns"])

    @cv.pipeline
    def watch(cur: str = "", ref: str = ""):
        report = drift_report(current=cur, reference=ref)
        with cv.when(report["dataset_drift"]):
            retrain(report)

    run = watch.run(cur=str(tmp_path / "cur.parquet"), ref=str(tmp_path / "ref.parquet"), client=client)
    assert run.status == "succeeded" and run.output("retrain") == "retrained on a"
    assert run.output("drift_report")["drifted_share"] == 1.0
