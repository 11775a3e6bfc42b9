"""Registry: versions, aliases, approval policy, rollback, lineage, audit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import conveyor as cv
from conveyor.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from conveyor.registry import parse_ref


def _model(seed: int = 0) -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "c": rng.integers(0, 3, 200)})
    y = (X["a"] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return LogisticRegression().fit(X, y), X


@pytest.fixture
def registry(client):
    reg = client.registry
    assert reg.bootstrap_admin(client.settings.actor)      # admin: may approve, delete, grant
    return reg


def test_versions_number_themselves_and_signature_is_inferred(registry) -> None:
    model, X = _model()
    v1 = registry.register("churn", model, metrics={"auc": 0.91}, data=X)
    v2 = registry.register("churn", _model(1)[0], metrics={"auc": 0.93})
    other = registry.register("fraud", model)
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.signature["inputs"] == [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "float64"},
                                      {"name": "c", "dtype": "int64"}]
    assert v1.signature["outputs"][0]["dtype"] == "int64"
    assert registry.resolve("churn").version == 2            # a bare name is the latest
    loaded = registry.load("churn:1")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_aliases_resolve_and_move_atomically(registry) -> None:
    registry.register("m", _model()[0])
    registry.register("m", _model(1)[0])
    assert registry.set_alias("m", "staging", 1) is None
    assert registry.resolve("m@staging").version == 1
    assert registry.set_alias("m", "staging", 2) == 1
    assert registry.resolve("m@staging").version == 2
    assert registry.resolve(parse_ref("m:1")).aliases == ()
    with pytest.raises(NotFound, match="has no alias 'prod'. Its aliases: staging→2"):
        registry.resolve("m@prod")
    with pytest.raises(NotFound, match="No model 'nope'"):
        registry.resolve("nope:1")


def test_protected_alias_needs_an_approved_version_by_an_approver(client) -> None:
    reg = client.registry
    reg.register("m", _model()[0])
    with pytest.raises(PermissionDenied, match="must be approved first"):
        reg.set_alias("m", "production", 1)
    with pytest.raises(PermissionDenied, match="needs the approver role and this store has no admin yet"):
        reg.approve("m:1", "looks good")
    from conveyor.registry import ModelRegistry

    ModelRegistry(reg.metadata, reg.artifacts, "boss").bootstrap_admin("boss")
    with pytest.raises(PermissionDenied, match=f"Actor '{reg.actor}' lacks the approver role"):
        reg.approve("m:1", "looks good")
    ModelRegistry(reg.metadata, reg.artifacts, "boss").grant(client.settings.actor, "approver")
    approved = reg.approve("m:1", "looks good")
    assert approved.approval == "approved"
    reg.set_alias("m", "production", 1)
    (decision,) = reg.models.approvals("m", 1)
    assert (decision.decision, decision.actor, decision.comment) == ("approved", client.settings.actor, "looks good")


def test_reject_and_rollback(registry) -> None:
    for seed in range(3):
        registry.register("m", _model(seed)[0])
        registry.approve(f"m:{seed + 1}")
        registry.set_alias("m", "production", seed + 1)
    assert registry.resolve("m@production").version == 3
    assert registry.rollback("m", "production") == (3, 2)
    assert registry.resolve("m@production").version == 2
    with pytest.raises(Conflict, match="protected alias 'production'"):
        registry.reject("m:2")
    assert registry.reject("m:3", "regressed").approval == "rejected"


def test_rollback_without_history_is_refused(registry) -> None:
    registry.register("m", _model()[0])
    registry.set_alias("m", "staging", 1)
    with pytest.raises(Conflict, match="no earlier version"):
        registry.rollback("m", "staging")


def test_delete_refuses_aliased_versions_and_hides_deleted(registry) -> None:
    registry.register("m", _model()[0])
    registry.register("m", _model(1)[0])
    registry.set_alias("m", "staging", 1)
    with pytest.raises(Conflict, match="still aliased as staging"):
        registry.delete("m:1")
    registry.delete("m:2")
    with pytest.raises(NotFound):
        registry.resolve("m:2")
    assert registry.resolve("m").version == 1


def test_audit_log_records_every_action_with_before_and_after(registry, client) -> None:
    registry.register("m", _model()[0])
    registry.register("m", _model(1)[0])
    registry.approve("m:1")
    registry.approve("m:2")
    registry.set_alias("m", "production", 1)
    registry.set_alias("m", "production", 2)
    registry.rollback("m", "production")
    registry.reject("m:2")
    registry.delete("m:2")
    actions = [e.action for e in reversed(registry.audit("m"))]
    assert actions == ["create_model", "register", "register", "approve", "approve", "alias", "alias",
                       "rollback", "reject", "delete"]
    rollback = next(e for e in registry.audit("m") if e.action == "rollback")
    assert (rollback.before, rollback.after, rollback.actor) == ({"version": 2}, {"version": 1}, client.settings.actor)


def test_bad_references_are_clear() -> None:
    with pytest.raises(InvalidRequest, match="positive whole number"):
        parse_ref("m:x")
    with pytest.raises(InvalidRequest, match="not valid"):
        parse_ref("bad name")


@cv.step
def training_data(seed: int) -> object:
    return _model(seed)[1]


@cv.step
def fit(df: object) -> int:
    y = (df["a"] > 0).astype(int)
    model = LogisticRegression().fit(df, y)
    version = cv.register_model("stepmodel", model, metrics={"auc": 0.8}, data=df)
    return version.version


@cv.pipeline
def train_and_register(seed: int = 0):
    fit(training_data(seed))


def test_register_inside_a_step_links_lineage(client) -> None:
    run = train_and_register.run(seed=3, client=client)
    assert run.output("fit") == 1
    lin = client.registry.lineage("stepmodel:1")
    assert lin.run["id"] == run.id and lin.run["parameters"] == {"seed": 3}
    assert lin.run["pipeline_version"]["name"] == "train_and_register"
    assert [s["name"] for s in lin.steps] == ["training_data", "fit"]
    data_artifact = {s: a for s, _n, a in client.metadata.artifacts.for_run(run.id)}["training_data"]
    assert lin.inputs == [{"step": "fit", "input": "df", "artifact": data_artifact.id,
                           "content_hash": data_artifact.content_hash, "type": data_artifact.type_name}]
    assert lin.environment["python"] and lin.environment["packages"] > 10
    outs = {n for _s, n, _a in client.metadata.artifacts.for_run(run.id)}
    assert "model/stepmodel" in outs


def test_ready_made_register_step(client) -> None:
    from conveyor.registry.steps import register

    @cv.step
    def make(seed: int) -> object:
        return _model(seed)[0]

    @cv.pipeline
    def pipe():
        register(make(1), name="ready", metrics={"auc": 0.9, "note": "x"}, alias="staging")

    run = pipe.run(client=client)
    assert run.output("register") == {"model": "ready", "version": 1, "alias": "staging", "metrics": {"auc": 0.9}}
    assert client.registry.resolve("ready@staging").metrics == {"auc": 0.9}


def test_rerun_of_the_register_step_moves_the_alias_again(client) -> None:
    """Side-effecting built-in steps are never cached: a re-run registers and moves the alias again."""
    from conveyor.registry.steps import register
    from conveyor.runtime.cache import miss_reasons

    @cv.step
    def make(seed: int) -> object:
        return _model(seed)[0]

    @cv.pipeline
    def pipe():
        register(make(1), name="moving", alias="staging")

    pipe.run(client=client)
    other = client.registry.register("moving", _model(2)[0])
    client.registry.set_alias("moving", "staging", other.version)
    assert client.registry.resolve("moving@staging").version == 2
    again = pipe.run(client=client)
    assert again.steps["make"].cache_hit and not again.steps["register"].cache_hit
    assert again.output("register")["version"] == 3
    assert client.registry.resolve("moving@staging").version == 3
    assert miss_reasons(client.metadata, again.id) == {"register": "the step is declared cache=False (never cached)"}


def test_register_in_tracking_run(client) -> None:
    with cv.start_run("nb", client=client) as run:
        v = cv.register_model("nbmodel", _model()[0])
    assert v.run_id == run.id
