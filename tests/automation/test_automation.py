"""Alerts (dedupe, webhook retry against a real receiver), schedules, data triggers across agent restarts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conveyor.automation.agent import Agent
from conveyor.automation.webhooks import Deliverer
from conveyor.errors import InvalidRequest
from tests.cli.test_cli import cli  # noqa: F401  (fixture)

PIPELINE = '''
import conveyor as cv
from pathlib import Path

@cv.step(cache=False)
def note(path: str, out: str) -> str:
    with open(out, "a") as fh:
        fh.write(path + "\\n")
    return path

@cv.pipeline
def ingest(path: str = "-", out: str = "seen.txt"):
    note(path, out)
'''


class Receiver:
    """A local HTTP endpoint that fails the first ``failures`` posts, then accepts; keeps bodies."""

    def __init__(self, failures: int) -> None:
        self.failures, self.bodies, self.calls = failures, [], 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = outer.calls > outer.failures
                if ok:
                    outer.bodies.append(json.loads(body))
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_alerts_are_deduplicated_within_the_cooldown(client) -> None:
    store = client.metadata.automation
    first = store.raise_alert("m", "m:drift", "drift!", {}, cooldown_s=60)
    second = store.raise_alert("m", "m:drift", "drift again", {}, cooldown_s=60)
    other = store.raise_alert("m", "m:latency", "slow", {}, cooldown_s=60)
    assert not first.suppressed and second.suppressed and not other.suppressed
    assert second.delivery == "none" and first.delivery == "pending"
    later = store.raise_alert("m", "m:drift", "drift after cool-down", {}, cooldown_s=0)
    assert not later.suppressed


def test_a_failing_webhook_is_retried_until_delivered(client) -> None:
    receiver = Receiver(failures=2)
    try:
        store = client.metadata.automation
        store.add_webhook("ops", receiver.url)
        alert = store.raise_alert("m", "m:drift", "drift in 3 columns", {"columns": ["a"]}, cooldown_s=60)
        deliverer = Deliverer(store, backoff_s=0.01, timeout_s=2)
        for _ in range(20):
            deliverer.deliver_pending()
            if store.alert(alert.id).delivery != "pending":
                break
            time.sleep(0.03)
        final = store.alert(alert.id)
        assert final.delivery == "delivered" and final.attempts == 3 and receiver.calls == 3
        body = receiver.bodies[0]
        assert "drift in 3 columns" in body["text"] and body["alert"]["id"] == alert.id
    finally:
        receiver.close()


def test_an_unreachable_webhook_gives_up_and_is_recorded(client) -> None:
    store = client.metadata.automation
    store.add_webhook("gone", "http://127.0.0.1:9/nothing")
    alert = store.raise_alert("m", "m:x", "x", {}, cooldown_s=60)
    deliverer = Deliverer(store, backoff_s=0.0, timeout_s=0.5, max_attempts=3)
    for _ in range(3):
        deliverer.deliver_pending()
    final = store.alert(alert.id)
    assert final.delivery == "failed" and final.attempts == 3 and "gone" in final.last_error


def test_schedule_fires_once_per_due_time_and_survives_restart(client, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(PIPELINE)
    store = client.metadata.automation
    store.create_schedule("nightly", f"{tmp_path / 'flow.py'}:ingest", "0 3 * * *",
                          {"path": "nightly", "out": str(tmp_path / "seen.txt")}, next_at=time.time() - 5)
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    agent.tick()
    agent.tick()                                    # not due any more
    agent.wait_for_children()
    Agent(client, deliver=False, cwd=str(tmp_path)).tick()   # a restarted agent does not fire it again
    firings = store.firings("nightly")
    assert len(firings) == 1 and firings[0].status == "succeeded" and firings[0].run_id
    assert (tmp_path / "seen.txt").read_text().splitlines() == ["nightly"]
    assert store.schedules()[0].next_at > time.time()
    run = client.get_run(firings[0].run_id)
    assert run.status == "succeeded" and run.record.tags["firing"] == firings[0].id


def test_data_trigger_handles_each_object_once_across_restarts(client, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(PIPELINE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("1")
    (inbox / "b.csv").write_text("2")
    (inbox / ".partial").write_text("ignored")
    store = client.metadata.automation
    store.create_trigger("on-files", "data", str(inbox), f"{tmp_path / 'flow.py'}:ingest",
                         {"path": "{object}", "out": str(tmp_path / "seen.txt")}, max_concurrent=1)
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    agent.tick()
    assert len(agent.children) == 1                 # concurrency limit 1: the second waits
    agent.wait_for_children()
    agent.tick()
    agent.wait_for_children()
    restarted = Agent(client, deliver=False, cwd=str(tmp_path))
    restarted.tick()
    assert restarted.children == {}                 # nothing new, nothing repeated
    (inbox / "c.csv").write_text("3")
    restarted.tick()
    restarted.wait_for_children()
    seen = sorted(Path(p).name for p in (tmp_path / "seen.txt").read_text().splitlines())
    assert seen == ["a.csv", "b.csv", "c.csv"]
    assert all(f.status == "succeeded" for f in store.firings("on-files"))


def test_bad_cron_and_monitor_options_are_named() -> None:
    from conveyor.automation.agent import next_cron
    from conveyor.automation.monitors import monitor_config

    with pytest.raises(InvalidRequest, match="cron"):
        next_cron("every day", time.time())
    with pytest.raises(InvalidRequest, match="--below"):
        monitor_config(metric="accuracy")
    with pytest.raises(InvalidRequest, match="choose one of"):
        monitor_config(metric="vibes", below=1)


def test_monitor_alert_starts_its_trigger_once_then_dedupes(client, tmp_path: Path) -> None:
    from tests.monitoring.test_endpoint_monitoring import _register, _traffic

    home = Path(client.settings.home)
    _register(home)
    _traffic(home, 1_000, shift=1.0, seed=3)
    (tmp_path / "flow.py").write_text(PIPELINE)
    store = client.metadata.automation
    store.create_monitor("churn-drift", "churn-api", 3600, {"window": "24h", "min_rows": 500, "drift_share": 0.3,
                                                              "cooldown_s": 3600})
    store.create_trigger("retrain", "monitor", "churn-drift", f"{tmp_path / 'flow.py'}:ingest",
                         {"path": "{monitor}", "out": str(tmp_path / "seen.txt")}, max_concurrent=1)
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    agent.tick()
    agent.wait_for_children()
    checks = store.checks("churn-drift")
    assert checks[-1].status == "alert" and checks[-1].findings[0]["columns"] == ["x0"]
    with client.metadata.automation.write() as conn:          # make it due again at once
        from sqlalchemy import update

        from conveyor.store.metadata import tables as t
        conn.execute(update(t.monitors).values(next_at=0))
    agent.tick()
    agent.wait_for_children()
    alerts = store.alerts("churn-drift")
    assert [a.suppressed for a in reversed(alerts)] == [False, True]
    firings = store.firings("retrain")
    assert len(firings) == 1 and firings[0].status == "succeeded" and firings[0].cause["monitor"] == "churn-drift"
    assert (tmp_path / "seen.txt").read_text().splitlines() == ["churn-drift"]
    assert len(store.checks("churn-drift")) == 2


def test_agent_stops_cleanly_on_sigterm(client, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "CONVEYOR_HOME": str(client.settings.home)}
    env.pop("CONVEYOR_METADATA_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "agent", "--tick", "0.2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    started = []
    for line in proc.stderr:                 # SIGTERM only once the handler is installed: no race
        started.append(line)
        if "agent started" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    err = "".join(started) + err
    assert proc.returncode == 0 and "agent stopping (signal 15)" in err and "agent stopped" in err


def test_a_collapse_in_traffic_is_a_row_count_alert(client) -> None:
    from conveyor.automation.monitors import check_and_alert
    from tests.monitoring.test_endpoint_monitoring import _register, _traffic

    home = Path(client.settings.home)
    _register(home)
    _traffic(home, 120, shift=0.0, seed=4)
    store = client.metadata.automation
    store.create_monitor("volume", "churn-api", 3600, {"window": "24h", "min_rows": 100})
    with store.write() as conn:                              # a monitor that has watched for two days
        from sqlalchemy import update

        from conveyor.store.metadata import tables as t
        conn.execute(update(t.monitors).values(created_at=time.time() - 2 * 86400))
    monitor = store.monitor("volume")
    for _ in range(3):
        store.add_check("volume", "ok", rows=1_000)
    result, alert = check_and_alert(client, monitor)
    assert result.status == "alert" and alert is not None and "120 rows against a usual 1000" in alert.message
    assert [f["kind"] for f in result.findings] == ["row_count"]


def test_trigger_names_itself_when_not_named(cli, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "flow.py").write_text(PIPELINE)
    (tmp_path / "inbox").mkdir()
    cli("triggers", "create", "--on", f"data:{tmp_path / 'inbox'}", "--run", "flow.py:ingest", "-p", "path={object}")
    listed = json.loads(cli("triggers", "list", "--json").stdout)
    assert listed[0]["name"] == "ingest-on-inbox" and listed[0]["params"] == {"path": "{object}"}
    bad = cli("triggers", "create", "--on", "cron:daily", "--run", "flow.py:ingest", ok=False)
    assert bad.returncode != 0 and "monitor:NAME or data:URI_PREFIX" in bad.stderr
