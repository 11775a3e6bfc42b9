"""The whole loop as a user runs it: `conveyor quickstart --loop`, then what the records say happened."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from tests.cli.test_cli import cli  # noqa: F401  (fixture)


def test_closed_loop_drift_alert_retrain_promote_switch(cli) -> None:  # noqa: F811
    out = cli("quickstart", "--loop").stdout
    assert "ALERT" in out and "promoted" in out and "server now answers with loop:2" in out

    history = json.loads(cli("monitors", "history", "loop-drift", "--json").stdout)
    assert any(c["status"] == "alert" and c["findings"][0]["columns"] == ["x0"] for c in history)
    firings = json.loads(cli("firings", "list", "--source", "loop-retrain", "--json").stdout)
    assert len(firings) == 1 and firings[0]["status"] == "succeeded" and firings[0]["cause"]["monitor"] == "loop-drift"
    (trigger,) = json.loads(cli("triggers", "list", "--json").stdout)
    assert trigger["fresh"] is True                     # its `load` step reads the traffic of the moment
    run = json.loads(cli("runs", "show", firings[0]["run_id"], "--json").stdout)
    assert run["status"] == "succeeded" and run["parameters"]["source"] == "recent"
    def production() -> int:
        versions = json.loads(cli("models", "show", "loop", "--json").stdout)
        return next(v["version"] for v in versions if "production" in v["aliases"])

    assert production() == 2
    audit = json.loads(cli("audit", "--model", "loop", "--json").stdout)
    decision = next(e for e in audit if e["action"] == "promotion_decision")
    assert decision["after"]["outcome"] == "promoted" and "beats" in decision["detail"]
    cli("models", "rollback", "loop", "--alias", "production")
    assert production() == 1


@pytest.mark.slow
def test_each_retrain_firing_of_the_example_reads_new_traffic_and_registers_a_new_version(client) -> None:
    from conveyor.automation.agent import Agent
    from conveyor.examples import closed_loop as loop
    from conveyor.monitoring.sources import ingest_labels
    from conveyor.serving.prediction_log import PredictionLog
    from conveyor.serving.schema import Batch

    actor = client.settings.actor
    client.metadata.models.grant(actor, "approver", actor)
    assert loop.train.run(source="initial", client=client).status == "succeeded"
    store = client.metadata.automation
    loop.create_retrain_trigger(store, 150)
    agent = Agent(client, deliver=False)
    for phase in (1, 2):                              # the traffic moves on between the two alerts
        X, y = loop.world(150, 100 + phase, phase)
        log = PredictionLog(client.settings.artifact_root, interval_s=60)
        ids = [f"p{phase}-{i}" for i in range(len(X))]
        now = time.time()
        for i, row in enumerate(X.to_numpy()):
            log.record(request_id=ids[i], ts=now - (len(X) - i) * 0.01, endpoint=loop.ENDPOINT, model=loop.MODEL,
                       version=1, shadow=False, latency_ms=1.0,
                       batch=Batch(None, 1, matrix=row[None, :], names=loop.FEATURES, dtypes=["float64"] * 4),
                       prediction=np.array([0]))
        log.close()
        ingest_labels(client.settings.artifact_root, pd.DataFrame({"request_id": ids, "label": y}),
                      endpoint=loop.ENDPOINT)
        store.fire("trigger", loop.TRIGGER, {"kind": "monitor", "monitor": loop.MONITOR, "alert": f"a{phase}"})
        agent.launch_pending()
        agent.wait_for_children()
    firings = sorted(store.firings(loop.TRIGGER), key=lambda f: f.at)
    assert [f.status for f in firings] == ["succeeded", "succeeded"], [f.error for f in firings]
    assert [v.version for v in client.metadata.models.versions(loop.MODEL)] == [1, 2, 3]
    for firing in firings:
        steps = {s.name: s.status for s in client.metadata.steps.for_run(firing.run_id)}
        assert steps["load"] == "succeeded" and steps["publish"] == "succeeded"     # not "cached"
