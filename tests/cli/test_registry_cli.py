"""The registry and serving commands, as a user types them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.test_cli import cli  # noqa: F401  (fixture)

TRAIN = '''
import numpy as np
import conveyor as cv
from sklearn.linear_model import LogisticRegression

@cv.step
def fit(seed: int) -> int:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 2))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    return cv.register_model("churn", model, metrics={"auc": 0.8 + seed / 100}, data=X).version

@cv.pipeline
def train(seed: int = 0):
    fit(seed)
'''


def test_models_alias_approval_rollback_endpoints_keys_audit(cli, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "train.py").write_text(TRAIN)
    cli("run", "train.py:train", "-p", "seed=1")
    cli("run", "train.py:train", "-p", "seed=2")
    models = json.loads(cli("models", "list", "--json").stdout)
    assert models[0]["name"] == "churn" and models[0]["versions"] == 2
    denied = cli("models", "alias", "churn:1", "production", ok=False)
    assert denied.returncode == 8 and "must be approved first" in denied.stderr
    actor = os.environ.get("CONVEYOR_ACTOR") or json.loads(cli("models", "show", "churn:1", "--json").stdout)[
        "created_by"]
    cli("models", "grant", actor, "--role", "approver")
    cli("models", "approve", "churn:1", "-m", "ok")
    cli("models", "approve", "churn:2")
    cli("models", "alias", "churn:1", "production")
    cli("models", "alias", "churn:2", "production")
    assert json.loads(cli("models", "show", "churn@production", "--json").stdout)["version"] == 2
    assert "2 → 1" in cli("models", "rollback", "churn").stdout
    lineage = json.loads(cli("models", "lineage", "churn:2", "--json").stdout)
    assert lineage["run"]["parameters"] == {"seed": 2} and lineage["steps"][0]["name"] == "fit"
    cli("endpoints", "create", "api", "--model", "churn@production", "--canary", "churn:2=10", "--shadow", "churn:2")
    (ep,) = json.loads(cli("endpoints", "list", "--json").stdout)
    assert ep["routes"] == [{"model": "churn@production", "weight": 90.0}, {"model": "churn:2", "weight": 10.0}]
    bad = cli("endpoints", "create", "api2", "--model", "churn@nope", ok=False)
    assert bad.returncode == 6 and "has no alias 'nope'" in bad.stderr
    key = json.loads(cli("keys", "create", "--scope", "predict", "--endpoint", "api", "--json").stdout)
    assert key["key"].startswith("cvk_")
    listed = cli("keys", "list", "--json").stdout
    assert key["key_id"] in listed and key["key"] not in listed      # the secret is never shown again
    actions = [e["action"] for e in json.loads(cli("audit", "--json").stdout)]
    assert {"register", "approve", "alias", "rollback", "endpoint_create", "key_create", "grant"} <= set(actions)
