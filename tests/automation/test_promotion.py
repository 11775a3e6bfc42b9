"""Champion/challenger: promotion on evidence, approval when protected, audit, rollback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.automation.promotion import PromotionPolicy, promote_challenger


def data(seed: int, n: int = 2_000, rule: str = "x1") -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x0", "x1", "x2"])
    return X, (X[rule] > 0).astype(int).to_numpy()


@pytest.fixture
def two_versions(client):
    reg = client.registry
    client.metadata.models.grant(reg.actor, "approver", "test")
    X_old, y_old = data(0, rule="x0")
    X_new, y_new = data(1, rule="x1")
    reg.register("churn", LogisticRegression().fit(X_old, y_old), data=X_old)
    reg.approve("churn:1")
    reg.set_alias("churn", "production", 1)
    reg.register("churn", LogisticRegression().fit(X_new, y_new), data=X_new)
    reg.set_alias("churn", "challenger", 2)
    return client


def test_a_better_challenger_is_approved_promoted_audited_and_can_be_rolled_back(two_versions) -> None:
    client = two_versions
    decision = promote_challenger(client, "churn", PromotionPolicy(metric="accuracy", margin=0.05, guards=["f1"]),
                                  holdout=data(2, rule="x1"))
    assert decision.promote and decision.outcome == "promoted" and decision.champion == 1
    assert decision.scores["holdout"]["challenger"]["accuracy"] > decision.scores["holdout"]["champion"]["accuracy"]
    assert client.metadata.models.aliases("churn")["production"] == 2
    assert client.registry.resolve("churn:2").approval == "approved"
    actions = [e.action for e in client.registry.audit("churn", 20)]
    assert "promotion_decision" in actions and "promote" in actions
    client.registry.rollback("churn", "production")
    assert client.metadata.models.aliases("churn")["production"] == 1


def test_a_challenger_that_does_not_win_by_the_margin_is_kept_out(two_versions) -> None:
    client = two_versions
    decision = promote_challenger(client, "churn", PromotionPolicy(metric="accuracy", margin=0.05),
                                  holdout=data(3, rule="x0"))       # the old world: the champion is right
    assert not decision.promote and decision.outcome == "kept" and "needs a margin" in decision.reason
    assert client.metadata.models.aliases("churn")["production"] == 1
    assert client.registry.audit("churn", 1)[0].action == "promotion_decision"


def test_without_the_approver_role_a_win_awaits_approval(two_versions, monkeypatch) -> None:
    import dataclasses

    client = two_versions
    monkeypatch.setattr(client, "settings", dataclasses.replace(client.settings, actor="robot"))
    decision = promote_challenger(client, "churn", holdout=data(4, rule="x1"))
    assert decision.promote and decision.outcome == "awaiting_approval"
    assert client.metadata.models.aliases("churn")["production"] == 1


def test_shadow_phase_judges_logged_answers_to_the_same_labelled_requests(two_versions) -> None:
    import time

    from conveyor.automation.promotion import start_shadow
    from conveyor.monitoring.sources import ingest_labels
    from conveyor.serving.prediction_log import PredictionLog

    client = two_versions
    client.metadata.endpoints.create("api", {"routes": [{"model": "churn@production", "weight": 100}]}, "t")
    spec = start_shadow(client, "churn", "api")
    assert spec["shadows"] == ["churn@challenger"]
    assert client.metadata.endpoints.get("api").spec["shadows"] == ["churn@challenger"]

    X, y = data(9, n=400, rule="x1")
    champion, challenger = client.registry.load("churn:1"), client.registry.load("churn:2")
    log = PredictionLog(client.settings.artifact_root, interval_s=60)
    now = time.time()
    for i in range(len(X)):
        row = {c: X[c].to_numpy()[i:i + 1] for c in X.columns}
        for version, model, shadow in ((1, champion, False), (2, challenger, True)):
            log.record(request_id=f"r{i}", ts=now, endpoint="api", model="churn", version=version, shadow=shadow,
                       latency_ms=1.0, columns=row, prediction=model.predict(X.iloc[i:i + 1]))
    log.close()
    ingest_labels(client.settings.artifact_root, pd.DataFrame({"request_id": [f"r{i}" for i in range(400)],
                                                               "label": y}), endpoint="api")
    decision = promote_challenger(client, "churn", PromotionPolicy(use_shadow=True, min_labelled=300),
                                  endpoint="api", window="1h")
    assert set(decision.scores) == {"shadow", "recent_traffic"} and decision.outcome == "promoted"
    assert decision.scores["shadow"]["challenger"]["accuracy"] > 0.9 > decision.scores["shadow"]["champion"]["accuracy"]
