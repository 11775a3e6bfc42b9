"""Governance over the server's API: the key proves the actor, the registry's policy decides.

A real ``conveyor serve`` (uvicorn on a loopback port) in a subprocess, keys issued with the real
``conveyor keys create``, calls made with httpx.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests import warm_cli
from tests.conftest import REPO
from tests.servers import ServeProcess

pytestmark = pytest.mark.slow


def _env(home: Path, actor: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(home), CONVEYOR_ACTOR=actor,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return env


def conveyor(home: Path, actor: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` as ``actor``, in a real process forked warm (``tests/warm_cli.py``)."""
    return warm_cli.run(args, cwd=home.parent, env=_env(home, actor), timeout=120)


def issue_key(home: Path, by: str, actor: str | None, scope: str = "deploy") -> str:
    args = ["keys", "create", "--scope", scope, "--json"] + (["--actor", actor] if actor else [])
    proc = conveyor(home, by, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["key"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A home with churn:1..3 (1 and 2 approved, production 1 → 2), alice its first admin, keys, a server."""
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    root = tmp_path_factory.mktemp("gov")
    home = root / "home"
    client = Client(load_settings(env={"CONVEYOR_HOME": str(home), "CONVEYOR_ACTOR": "alice"}, cwd=root))
    reg = client.registry
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    for _ in range(3):
        reg.register("churn", LogisticRegression().fit(X, X[:, 0] > 0), data=X)
    assert reg.bootstrap_admin("alice")
    for v in (1, 2):
        reg.approve(f"churn:{v}")
        reg.set_alias("churn", "production", v)
    from conveyor.serving.auth import generate_key

    def stored_key(actor: str | None, scope: str) -> str:    # as `keys create` stores it, without a subprocess
        key_id, key, digest = generate_key()
        client.metadata.endpoints.add_key(key_id, digest, scope, None, None, None, "alice", acts_as=actor)
        return key

    keys = {"alice": issue_key(home, "alice", "alice"), "mallory": issue_key(home, "alice", "mallory"),
            "bob": stored_key("bob", "deploy"), "anonymous": stored_key(None, "admin"),
            "predict": stored_key(None, "predict")}
    server = ServeProcess("--no-prediction-log", env=_env(home, "server"), cwd=root).wait_healthy()
    try:
        yield {"url": server.url, "keys": keys, "client": client, "home": home, "root": root}
    finally:
        server.stop()
        client.close()


def call(world: dict[str, Any], method: str, path: str, who: str | None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world['keys'][who]}"} if who else {}
    return httpx.request(method, f"{world['url']}/v1/registry{path}", headers=headers,
                         content=None if body is None else json.dumps(body), timeout=30)


def test_an_actor_cannot_issue_itself_a_key_that_acts(world) -> None:
    proc = conveyor(world["home"], "mallory", "keys", "create", "--scope", "deploy", "--actor", "mallory")
    assert proc.returncode == 8
    assert "Actor 'mallory' lacks the admin role needed to issue a key that acts as an actor" in proc.stderr
    proc = conveyor(world["home"], "alice", "keys", "create", "--scope", "predict", "--actor", "bob")
    assert proc.returncode == 2 and "--scope deploy or admin" in proc.stderr


def test_calls_without_a_key_that_carries_an_actor_are_refused(world) -> None:
    r = call(world, "POST", "/models/churn/versions/3/approve", None)
    assert r.status_code == 401 and "conveyor keys create --scope deploy --actor NAME" in r.json()["error"]
    assert r.headers["content-type"] == "application/json"
    r = httpx.post(f"{world['url']}/v1/registry/models/churn/versions/3/approve",
                   headers={"Authorization": "Bearer cvk_nope_nope"}, timeout=30)
    assert r.status_code == 401 and "not valid or was revoked" in r.json()["error"]
    r = call(world, "POST", "/models/churn/versions/3/approve", "anonymous")
    assert r.status_code == 403 and "carries no actor" in r.json()["error"]
    r = call(world, "POST", "/models/churn/versions/3/approve", "predict")
    assert r.status_code == 403 and "carries no actor" in r.json()["error"]
    assert world["client"].registry.resolve("churn:3").approval == "pending"


def test_whoami_names_the_keys_actor(world) -> None:
    assert call(world, "GET", "/whoami", "alice").json() == {"actor": "alice", "roles": ["admin"]}
    assert call(world, "GET", "/whoami", "mallory").json() == {"actor": "mallory", "roles": []}


def test_an_actor_without_a_role_cannot_grant_approve_or_roll_back(world) -> None:
    r = call(world, "POST", "/roles", "mallory", {"actor": "mallory", "role": "approver"})
    assert r.status_code == 403 and "Actor 'mallory' lacks the admin role" in r.json()["error"]
    r = call(world, "POST", "/models/churn/versions/3/approve", "mallory", {"comment": "trust me"})
    assert r.status_code == 403 and "lacks the approver role" in r.json()["error"]
    r = call(world, "DELETE", "/models/churn/aliases/production", "mallory")
    assert r.status_code == 403 and "lacks the approver role" in r.json()["error"]
    r = call(world, "PUT", "/models/churn/aliases/production", "mallory", {"version": 3})
    assert r.status_code == 403 and "version 3 is not approved" in r.json()["error"]
    reg = world["client"].registry
    assert reg.role_grants() == [("alice", "admin")]
    assert reg.resolve("churn:3").approval == "pending" and reg.resolve("churn@production").version == 2


def test_governance_through_the_api_with_roles_granted_and_revoked(world) -> None:
    reg = world["client"].registry
    assert call(world, "POST", "/roles", "alice", {"actor": "bob", "role": "approver"}).status_code == 200
    r = call(world, "POST", "/models/churn/versions/3/approve", "bob", {"comment": "eval ok"})
    assert r.status_code == 200 and r.json()["approval"] == "approved"
    r = call(world, "PUT", "/models/churn/aliases/production", "bob", {"version": 3})
    assert r.json() == {"model": "churn", "alias": "production", "before": 2, "version": 3}
    r = call(world, "POST", "/models/churn/versions/3/reject", "bob", {})
    assert r.status_code == 409 and "holds protected alias 'production'" in r.json()["error"]
    r = call(world, "POST", "/models/churn/versions/2/reject", "bob", {"comment": "leak"})
    assert r.status_code == 200 and r.json()["approval"] == "rejected"
    # the production alias held 2 before 3: rolling back onto the rejected 2 is refused, over HTTP as on the CLI
    r = call(world, "POST", "/models/churn/aliases/production/rollback", "bob")
    assert r.status_code == 403 and "version 2 was rejected: it must be approved first" in r.json()["error"]
    assert reg.resolve("churn@production").version == 3
    decision = next(e for e in reg.audit("churn") if e.action == "reject")
    assert (decision.actor, decision.version, decision.detail) == ("bob", 2, "leak")
    assert call(world, "DELETE", "/roles/bob/approver", "alice").json()["revoked"] is True
    r = call(world, "POST", "/models/churn/versions/1/reject", "bob")     # revoked: refused on the next call
    assert r.status_code == 403 and "lacks the approver role" in r.json()["error"]


def test_errors_are_json_and_name_the_thing(world) -> None:
    r = call(world, "POST", "/models/nope/versions/1/approve", "alice")
    assert r.status_code == 404 and "No model 'nope'" in r.json()["error"]
    r = call(world, "POST", "/models/churn/versions/99/approve", "alice")
    assert r.status_code == 404 and "has no version 99" in r.json()["error"]
    r = call(world, "PUT", "/models/churn/aliases/staging", "alice", {"version": "three"})
    assert r.status_code == 400 and r.json()["field"] == "version"
    r = httpx.put(f"{world['url']}/v1/registry/models/churn/aliases/staging", content=b"{not json",
                  headers={"Authorization": f"Bearer {world['keys']['alice']}"}, timeout=30)
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = call(world, "POST", "/models/churn/aliases/staging/rollback", "alice")
    assert r.status_code == 409 and "no earlier version" in r.json()["error"]
    r = call(world, "POST", "/roles", "alice", {"actor": "bob", "role": "superuser"})
    assert r.status_code == 400 and r.json()["field"] == "role"
    r = call(world, "GET", "/models/churn", "mallory")
    assert r.status_code == 200 and [v["version"] for v in r.json()["versions"]] == [1, 2, 3]
