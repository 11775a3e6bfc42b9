"""The shipped examples run end to end and produce sensible models."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.examples.quickstart import CANDIDATES, training
from conveyor.examples.regression_sweep import sweep


@pytest.mark.slow
def test_quickstart_publishes_the_best_candidate(client) -> None:
    run = training.run(rows=3000, client=client)
    report = run.output("evaluate")
    assert [s["candidate"] for s in report["scores"]] == CANDIDATES
    aucs = [s["auc"] for s in report["scores"]]
    assert report["auc"] == max(aucs) > 0.7
    assert run.steps["publish"].status == "succeeded"
    assert run.output("publish")["candidate"] == report["best_candidate"]
    model = run.output("pick_best")
    test = run.output("features", "test_features")
    proba = model.predict_proba(test.drop(columns=["churn"]))[:, 1]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test["churn"], proba) == pytest.approx(report["auc"])


@pytest.mark.slow
def test_quickstart_high_threshold_skips_publish(client) -> None:
    run = training.run(rows=2000, threshold=0.999, client=client)
    assert run.steps["publish"].status == "skipped"


def test_regression_sweep_picks_best_alpha(client) -> None:
    run = sweep.run(alphas=[0.01, 1.0, 100.0], folds=3, client=client)
    results = run.output("cross_validate")
    best = run.output("choose")
    assert best == max(results, key=lambda r: r["r2"])
    model = run.output("fit_final")
    assert np.isclose(model.alpha, best["alpha"])
    curve = [m for m in client.metadata.tracking.metrics(run.id) if m.key == "alpha=1.rmse"]
    assert sorted(m.step for m in curve) == [0, 1, 2]
