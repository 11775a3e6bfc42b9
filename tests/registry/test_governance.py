"""The registry's one policy: roles for every action, an explicit first admin, the alias gate on rollback,
and no delete of a version an endpoint serves."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.errors import Conflict, NotFound, PermissionDenied
from conveyor.registry import ModelRegistry
from conveyor.registry.registry import POLICY


def _model(seed: int = 0) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 2))
    return LogisticRegression().fit(X, X[:, 0] > 0)


def as_actor(client, actor: str) -> ModelRegistry:
    return ModelRegistry(client.metadata, client.artifacts, actor)


@pytest.fixture
def admin(client) -> ModelRegistry:
    reg = as_actor(client, "alice")
    assert reg.bootstrap_admin("alice") is True
    return reg


def test_grant_needs_an_admin_and_the_first_admin_is_named_explicitly(client) -> None:
    mallory = as_actor(client, "mallory")
    with pytest.raises(PermissionDenied, match="no admin yet.*conveyor init --admin NAME"):
        mallory.grant("mallory", "approver")             # first come is not first served
    assert mallory.role_grants() == []
    assert as_actor(client, "ops").bootstrap_admin("alice") is True
    assert as_actor(client, "alice").bootstrap_admin("alice") is False     # idempotent for the admin itself
    with pytest.raises(Conflict, match=r"already has an admin \(alice\)"):
        mallory.bootstrap_admin("mallory")
    with pytest.raises(PermissionDenied, match="Actor 'mallory' lacks the admin role needed to grant"):
        mallory.grant("mallory", "approver")
    as_actor(client, "alice").grant("bob", "approver")
    assert mallory.role_grants() == [("alice", "admin"), ("bob", "approver")]
    grant = next(e for e in mallory.audit() if e.action == "grant")
    assert (grant.actor, grant.after) == ("alice", {"actor": "bob", "role": "approver"})
    assert next(e for e in mallory.audit() if e.action == "bootstrap_admin").actor == "ops"


def test_every_policy_action_is_refused_without_its_role(client, admin) -> None:
    admin.register("m", _model())
    admin.approve("m:1")
    admin.set_alias("m", "production", 1)
    nobody = as_actor(client, "nobody")
    attempts = {
        "grant": lambda: nobody.grant("nobody", "admin"),
        "revoke": lambda: nobody.revoke("alice", "admin"),
        "protect": lambda: nobody.set_protected("m", []),
        "delete": lambda: nobody.delete("m:1"),
        "approve": lambda: nobody.approve("m:1"),
        "reject": lambda: nobody.reject("m:1"),
        "unalias_protected": lambda: nobody.remove_alias("m", "production"),
        "issue_key": lambda: nobody.authorize("issue_key"),
    }
    assert set(attempts) == set(POLICY)       # every action of the policy is tried here
    for action, attempt in attempts.items():
        with pytest.raises(PermissionDenied, match=f"lacks the {POLICY[action]} role"):
            attempt()
    assert admin.resolve("m@production").version == 1 and admin.protected_aliases("m") == ["production"]


def test_an_approver_approves_but_cannot_grant_delete_or_protect(client, admin) -> None:
    admin.grant("bob", "approver")
    bob = as_actor(client, "bob")
    bob.register("m", _model())
    assert bob.approve("m:1").approval == "approved"
    for attempt in (lambda: bob.grant("bob", "admin"), lambda: bob.delete("m:1"),
                    lambda: bob.set_protected("m", [])):
        with pytest.raises(PermissionDenied, match="lacks the admin role"):
            attempt()


def test_rollback_onto_a_rejected_version_is_refused(client, admin) -> None:
    for seed in range(2):
        admin.register("m", _model(seed))
        admin.approve(f"m:{seed + 1}")
        admin.set_alias("m", "production", seed + 1)
    admin.set_alias("m", "staging", 1)     # unprotected aliases keep moving freely
    admin.reject("m:1", "leaks labels")
    nobody = as_actor(client, "nobody")
    with pytest.raises(PermissionDenied, match="version 1 was rejected: it must be approved first"):
        nobody.rollback("m", "production")
    with pytest.raises(PermissionDenied, match="version 1 was rejected"):
        admin.rollback("m", "production")          # the gate is on the version, whoever asks
    assert admin.resolve("m@production").version == 2
    assert [e.action for e in admin.audit("m")].count("rollback") == 0


def test_rollback_onto_an_approved_version_needs_no_role(client, admin) -> None:
    for seed in range(2):
        admin.register("m", _model(seed))
        admin.approve(f"m:{seed + 1}")
        admin.set_alias("m", "production", seed + 1)
    assert as_actor(client, "oncall").rollback("m", "production") == (2, 1)
    assert admin.resolve("m@production").version == 1


def test_revoke_takes_a_role_away_but_never_the_last_admin(client, admin) -> None:
    admin.grant("bob", "approver")
    admin.revoke("bob", "approver")
    with pytest.raises(PermissionDenied, match="lacks the approver role"):
        as_actor(client, "bob").authorize("approve")
    with pytest.raises(NotFound, match="does not hold the approver role"):
        admin.revoke("bob", "approver")
    with pytest.raises(Conflict, match="'alice' is the last admin"):
        admin.revoke("alice", "admin")
    admin.grant("carol", "admin")
    admin.revoke("alice", "admin")
    assert admin.role_grants() == [("carol", "admin")]


@pytest.mark.parametrize("how", ["route", "canary", "shadow", "alias", "latest"])
def test_delete_is_refused_while_an_endpoint_serves_the_version(client, admin, how) -> None:
    from conveyor.serving.endpoints import Endpoints

    for seed in range(3):
        admin.register("m", _model(seed))
    admin.set_alias("m", "champion", 2)
    specs = {"route": dict(model="m:2"), "canary": dict(model="m:1", canary={"m:2": 10}),
             "shadow": dict(model="m:1", shadow=["m:2"]), "alias": dict(model="m@champion"),
             "latest": dict(model="m")}
    endpoints = Endpoints(client)
    endpoints.create("api", **specs[how])
    target = "m:3" if how == "latest" else "m:2"
    if how != "alias":
        admin.remove_alias("m", "champion")
    with pytest.raises(Conflict, match=rf"{target} is served by endpoint 'api' \((route|shadow) m.*\)\. Change the "
                                       r"endpoint first \(`conveyor endpoints update api"):
        admin.delete(target)
    assert admin.resolve(target)                    # still there
    endpoints.update("api", model="m:1")
    if how == "alias":
        with pytest.raises(Conflict, match="still aliased as champion"):
            admin.delete(target)
        admin.remove_alias("m", "champion")
    assert admin.delete(target).version == int(target[-1])
    with pytest.raises(NotFound):
        admin.resolve(target)


def test_delete_through_an_alias_an_endpoint_uses_names_the_endpoint(client, admin) -> None:
    from conveyor.serving.endpoints import Endpoints

    admin.register("m", _model(0))
    admin.register("m", _model(1))
    admin.set_alias("m", "champion", 1)
    Endpoints(client).create("api", model="m@champion")
    used = admin.endpoints_using(admin.resolve("m:1"))
    assert used == [("api", "route", "m@champion")]


def test_a_failed_signature_inference_is_logged(client, admin, caplog) -> None:
    class NoPredict:
        def predict(self, X):
            raise ValueError("needs 3 columns")

    from conveyor.registry.signature import infer_signature

    with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
        sig = infer_signature(NoPredict(), np.zeros((4, 2)))
    assert sig["outputs"] == [] and [c["name"] for c in sig["inputs"]] == ["x0", "x1"]
    assert "NoPredict.predict on 5 sample rows raised ValueError: needs 3 columns" in caplog.text
