"""The registry and serving commands, as a user types them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
    denied = cli("models", "grant", actor, "--role", "approver", ok=False)
    assert denied.returncode == 8 and "no admin yet" in denied.stderr
    assert "admin: " + actor in cli("init", "--admin", actor).stdout
    cli("models", "grant", "reviewer", "--role", "approver")
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
    assert {"register", "approve", "alias", "rollback", "endpoint_create", "key_create", "grant",
            "bootstrap_admin"} <= set(actions)


# --- governance bypasses, through the real entry point ---------------------------------------------

import subprocess  # noqa: E402

import pytest  # noqa: E402

from tests.conftest import REPO  # noqa: E402


@pytest.fixture
def as_actor(tmp_path: Path, warm_cli):
    """``conveyor`` in a real process (forked warm) with CONVEYOR_ACTOR set per call, on one home."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    base.update(CONVEYOR_HOME=str(tmp_path / "home"), COLUMNS="200",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    def run(actor: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = warm_cli.run(args, cwd=tmp_path, env={**base, "CONVEYOR_ACTOR": actor}, timeout=120)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def _store(tmp_path: Path, versions: int, actor: str = "alice") -> Any:
    """A client on the home the CLI uses, with ``versions`` versions of 'churn' and ``actor`` as first admin
    (set up in-process: the bypasses themselves go through the CLI)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    client = Client(load_settings(env={"CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_ACTOR": actor},
                                  cwd=tmp_path))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    for _ in range(versions):
        client.registry.register("churn", LogisticRegression().fit(X, X[:, 0] > 0), data=X)
    client.registry.bootstrap_admin(actor)
    return client


@pytest.mark.slow
def test_an_actor_without_a_role_cannot_grant_itself_a_role(as_actor, tmp_path: Path) -> None:
    assert "admin: alice" in as_actor("alice", "init", "--admin", "alice").stdout
    denied = as_actor("mallory", "models", "grant", "mallory", "--role", "approver", ok=False)
    assert denied.returncode == 8 and "Actor 'mallory' lacks the admin role" in denied.stderr
    again = as_actor("mallory", "init", "--admin", "mallory", ok=False)
    assert again.returncode == 7 and "already has an admin (alice)" in again.stderr
    assert "Traceback" not in denied.stderr + again.stderr
    roles = json.loads(as_actor("mallory", "models", "roles", "--json").stdout)
    assert roles == [{"actor": "alice", "role": "admin"}]


@pytest.mark.slow
def test_rollback_onto_a_rejected_version_is_refused_from_the_cli(as_actor, tmp_path: Path) -> None:
    client = _store(tmp_path, 2)
    for v in (1, 2):
        client.registry.approve(f"churn:{v}")
        client.registry.set_alias("churn", "production", v)
    client.registry.reject("churn:1", "label leak")
    denied = as_actor("mallory", "models", "rollback", "churn", ok=False)
    assert denied.returncode == 8 and "version 1 was rejected: it must be approved first" in denied.stderr
    assert client.registry.resolve("churn@production").version == 2
    client.close()


@pytest.mark.slow
def test_deleting_a_version_an_endpoint_routes_to_is_refused(as_actor, tmp_path: Path) -> None:
    from conveyor.serving.endpoints import Endpoints

    client = _store(tmp_path, 2)
    Endpoints(client).create("api", model="churn:1", canary={"churn:2": 10})
    denied = as_actor("alice", "models", "delete", "churn:2", "--yes", ok=False)
    assert denied.returncode == 7
    assert "churn:2 is served by endpoint 'api' (route churn:2)" in denied.stderr
    assert "conveyor endpoints update api" in denied.stderr
    Endpoints(client).update("api", model="churn:1")
    assert "Deleted churn:2." in as_actor("alice", "models", "delete", "churn:2", "--yes").stdout
    client.close()


@pytest.mark.slow
def test_a_duplicate_monitor_is_a_conflict_that_names_it(as_actor, tmp_path: Path) -> None:
    from conveyor.serving.endpoints import Endpoints

    client = _store(tmp_path, 1)
    Endpoints(client).create("api", model="churn:1")
    client.close()
    as_actor("alice", "monitors", "create", "watch", "--endpoint", "api", "--every", "1h")
    dup = as_actor("alice", "monitors", "create", "watch", "--endpoint", "api", "--every", "1h", ok=False)
    assert dup.returncode == 7, dup.stderr
    assert "'watch' already exists" in dup.stderr
    assert "unavailable" not in dup.stderr.lower() and "server is running" not in dup.stderr
