"""The whole loop as a user runs it: `conveyor quickstart --loop`, then what the records say happened."""

from __future__ import annotations

import json

from tests.cli.test_cli import cli  # noqa: F401  (fixture)


def test_closed_loop_drift_alert_retrain_promote_switch(cli) -> None:  # noqa: F811
    out = cli("quickstart", "--loop").stdout
    assert "ALERT" in out and "promoted" in out and "server now answers with loop:2" in out

    history = json.loads(cli("monitors", "history", "loop-drift", "--json").stdout)
    assert any(c["status"] == "alert" and c["findings"][0]["columns"] == ["x0"] for c in history)
    firings = json.loads(cli("firings", "list", "--source", "loop-retrain", "--json").stdout)
    assert len(firings) == 1 and firings[0]["status"] == "succeeded" and firings[0]["cause"]["monitor"] == "loop-drift"
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
