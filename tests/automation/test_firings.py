"""Firings that cannot stall the agent: dead launchers, backlogs, firings that did not start, fresh runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from conveyor.automation.agent import Agent
from conveyor.config import load_settings
from conveyor.runtime.client import Client
from conveyor.store.metadata import tables as t
from tests import warm_cli
from tests.automation.test_automation import PIPELINE

BLOCKING = '''
import os
import time
from pathlib import Path

import conveyor as cv


@cv.step(cache=False)
def hold(tag: str, folder: str) -> str:
    d = Path(folder)
    (d / f"started-{tag}-{os.getpid()}").write_text("")
    while not (d / "go").exists():
        time.sleep(0.05)
    (d / f"done-{tag}").write_text(str(os.getpid()))
    return tag


@cv.pipeline
def blocking(tag: str = "-", folder: str = "."):
    hold(tag, folder)
'''


def _until(predicate, what: str, timeout_s: float = 120.0):
    """Poll until ``predicate()`` is truthy; the deadline only bounds a hang, it asserts no timing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.slow
def test_a_launcher_killed_with_sigkill_is_reset_and_later_firings_still_run(client, tmp_path: Path) -> None:
    (tmp_path / "blocking.py").write_text(BLOCKING)
    store = client.metadata.automation
    store.create_trigger("hold", "monitor", "m", f"{tmp_path / 'blocking.py'}:blocking",
                         {"tag": "{alert}", "folder": str(tmp_path)}, max_concurrent=1)
    first = store.fire("trigger", "hold", {"kind": "monitor", "alert": "one"})
    second = store.fire("trigger", "hold", {"kind": "monitor", "alert": "two"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(client.settings.home)
    agent = subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "agent", "--tick", "0.2"], env=env,
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        running = _until(lambda: (f := store.firing(first)).status == "running" and f.launcher_pid
                         and list(tmp_path.glob(f"started-one-{f.launcher_pid}")) and f, "the first launch")
        assert running.launcher_host == socket.gethostname() and running.attempts == 1
        assert store.firing(second).status == "pending"            # the concurrency limit holds it back
        os.kill(running.launcher_pid, signal.SIGKILL)               # dies while its firing says running
        (tmp_path / "go").write_text("")
        _until(lambda: store.firing(second).status == "succeeded", "the second firing to run")
        _until(lambda: store.firing(first).status == "succeeded", "the first firing to be run again")
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(timeout=60)
    done = store.firing(first)
    assert done.attempts == 2 and done.launcher_pid != running.launcher_pid
    assert f"launcher pid {running.launcher_pid}" in done.error and "exited without recording" in done.error
    assert (tmp_path / "done-one").read_text() == str(done.launcher_pid)
    assert (tmp_path / "done-two").exists()
    assert client.get_run(done.run_id).status == "succeeded"
    (orphan,) = [r for r in client.metadata.runs.list(limit=10) if r.id != done.run_id and r.tags.get("firing") == first]
    assert orphan.status == "failed" and "exited without recording" in orphan.error   # not "running" for ever
    assert agent.returncode == 0, err


def test_dead_launchers_are_reset_by_pid_or_heartbeat_and_give_up_after_the_last_attempt(client) -> None:
    store = client.metadata.automation
    store.create_trigger("t", "monitor", "m", "flow.py:ingest", {}, max_concurrent=4)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                                      # a pid that no longer runs here
    silent, beating, exited, alive = (store.fire("trigger", "t", {"kind": "monitor"}) for _ in range(4))
    for fid, host, pid in ((silent, "other-host", 4242), (beating, "other-host", 4243),
                           (exited, socket.gethostname(), gone.pid), (alive, socket.gethostname(), os.getpid())):
        assert store.claim_firing(fid)
        store.record_launcher(fid, pid, host)
    with store.write() as conn:
        conn.execute(update(t.firings).where(t.firings.c.id == silent)
                     .values(heartbeat_at=time.time() - 10 * client.settings.agent_heartbeat_s))
    agent = Agent(client, deliver=False)
    assert sorted(agent.reset_dead_launchers()) == sorted([silent, exited])
    reset = store.firing(silent)
    assert reset.status == "pending" and reset.launcher_pid is None
    assert "pid 4242 on other-host sent no heartbeat" in reset.error
    assert f"launcher pid {gone.pid} on {socket.gethostname()} exited without recording" in store.firing(exited).error
    assert store.firing(beating).status == "running"               # beats: alive, wherever it runs
    assert store.firing(alive).status == "running"                 # its pid runs here and it beats
    with store.write() as conn:                                      # its last allowed attempt, then silence
        conn.execute(update(t.firings).where(t.firings.c.id == beating)
                     .values(attempts=client.settings.agent_max_attempts, heartbeat_at=0.0))
    assert agent.reset_dead_launchers() == [beating]
    failed = store.firing(beating)
    assert failed.status == "failed" and failed.finished_at is not None
    assert f"gave up after {client.settings.agent_max_attempts} attempt(s)" in failed.error
    assert f"conveyor firings retry {beating}" in failed.error


def test_a_backlog_is_launched_oldest_first(client, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(PIPELINE)
    store = client.metadata.automation
    store.create_trigger("busy", "monitor", "m", f"{tmp_path / 'flow.py'}:ingest",
                         {"path": "{alert}", "out": str(tmp_path / "seen.txt")}, max_concurrent=1)
    base = time.time() - 10_000
    rows = [{"id": f"f{i:04d}", "source_kind": "trigger", "source": "busy", "at": base + i,
             "cause": {"kind": "monitor", "alert": f"a{i}"}, "status": "pending", "attempts": 0}
            for i in range(260)]                                     # more than one page of firings
    with store.write() as conn:
        conn.execute(insert(t.firings), list(reversed(rows)))
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    assert agent.launch_pending() == ["f0000"]
    agent.wait_for_children()
    assert store.firing("f0000").status == "succeeded"
    assert (tmp_path / "seen.txt").read_text().splitlines() == ["a0"]
    assert agent.launch_pending() == ["f0001"]
    agent.wait_for_children()


def test_a_firing_that_did_not_start_keeps_its_object_and_is_retried(settings, tmp_path: Path) -> None:
    client = Client(settings.with_overrides(agent_max_attempts=2))     # the launchers get it from the agent
    flow = tmp_path / "flow.py"
    flow.write_text(PIPELINE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("1")
    store = client.metadata.automation
    store.create_trigger("files", "data", str(inbox), f"{flow}:ingest",
                         {"path": "{object}", "out": str(tmp_path / "seen.txt")}, max_concurrent=1)
    flow.rename(tmp_path / "flow.py.away")                           # e.g. a checkout in progress
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    agent.tick()
    agent.wait_for_children()
    (firing,) = store.firings("files")
    assert firing.status == "pending" and firing.attempts == 1
    assert "did not start" in firing.error and "does not exist" in firing.error
    (tmp_path / "flow.py.away").rename(flow)
    agent.tick()
    agent.wait_for_children()
    done = store.firing(firing.id)
    assert done.status == "succeeded" and done.attempts == 2
    assert [Path(p).name for p in (tmp_path / "seen.txt").read_text().splitlines()] == ["a.csv"]

    (inbox / "b.csv").write_text("2")                                # now it stays broken
    flow.rename(tmp_path / "flow.py.away")
    for _ in range(client.settings.agent_max_attempts):
        agent.tick()
        agent.wait_for_children()
    broken = next(f for f in store.firings("files") if f.id != firing.id)
    assert broken.status == "failed" and broken.attempts == client.settings.agent_max_attempts
    assert "gave up after 2 attempt(s): did not start" in broken.error
    agent.tick()
    assert len(store.firings("files")) == 2                          # b.csv is not fired a second time
    (tmp_path / "flow.py.away").rename(flow)
    store.retry_firing(broken.id)
    agent.tick()
    agent.wait_for_children()
    assert store.firing(broken.id).status == "succeeded"
    assert [Path(p).name for p in (tmp_path / "seen.txt").read_text().splitlines()] == ["a.csv", "b.csv"]
    client.close()


@pytest.mark.slow
def test_an_agent_started_in_another_folder_runs_what_was_created_with_relative_paths(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "flows").mkdir(parents=True)
    (project / "inbox").mkdir()
    elsewhere.mkdir()
    (project / "flows" / "ingest.py").write_text(PIPELINE)
    (project / "inbox" / "a.csv").write_text("1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(tmp_path / "home")

    def conveyor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        proc = warm_cli.run(args, cwd=cwd, env=env, timeout=120)        # a real process, forked warm
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    out = str(tmp_path / "seen.txt")
    conveyor("triggers", "create", "--on", "data:inbox", "--run", "flows/ingest.py:ingest", "-p", "path={object}",
             "-p", f"out={out}", "--name", "files", cwd=project)
    conveyor("schedules", "create", "flows/ingest.py:ingest", "--cron", "0 3 * * *", "-p", f"out={out}",
             "--fresh", cwd=project)
    (trigger,) = json.loads(conveyor("triggers", "list", "--json", cwd=project).stdout)
    (schedule,) = json.loads(conveyor("schedules", "list", "--json", cwd=project).stdout)
    absolute = f"{project / 'flows' / 'ingest.py'}:ingest"
    assert trigger["run"] == absolute and schedule["target"] == absolute
    assert schedule["fresh"] is True and trigger["fresh"] is False
    assert trigger["on"] == f"data:{project / 'inbox'}"
    conveyor("agent", "--once", cwd=elsewhere)
    client = Client(load_settings(env={"CONVEYOR_HOME": str(tmp_path / "home")}))
    try:
        store = client.metadata.automation
        (firing,) = _until(lambda: [f for f in store.firings("files") if f.status in ("succeeded", "failed")],
                           "the firing to finish")
        assert firing.status == "succeeded", firing.error
    finally:
        client.close()
    assert [Path(p).name for p in Path(out).read_text().splitlines()] == ["a.csv"]


DATA_READING = '''
from pathlib import Path

import conveyor as cv


@cv.step
def load(path: str) -> list:
    """Reads the outside world: the cache cannot see the file change."""
    return [float(x) for x in Path(path).read_text().split()]


@cv.step
def publish(values: list) -> int:
    from sklearn.dummy import DummyRegressor

    model = DummyRegressor().fit([[v] for v in values], values)
    return cv.register_model("retrained", model, metrics={"mean": sum(values) / len(values)}).version


@cv.pipeline
def retrain(path: str = "data.txt"):
    publish(load(path))
'''


@pytest.mark.slow
def test_fresh_trigger_firings_register_a_new_model_version_each(client, tmp_path: Path) -> None:
    (tmp_path / "retrain.py").write_text(DATA_READING)
    data = tmp_path / "data.txt"
    store = client.metadata.automation
    store.create_trigger("retrain", "monitor", "drift", f"{tmp_path / 'retrain.py'}:retrain", {"path": str(data)},
                         max_concurrent=1, fresh=True)
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    for values in ("1 2 3", "10 20 30"):                         # the world changed between the two alerts
        data.write_text(values)
        store.fire("trigger", "retrain", {"kind": "monitor", "monitor": "drift", "alert": values})
        agent.launch_pending()
        agent.wait_for_children()
    firings = store.firings("retrain")
    assert [f.status for f in firings] == ["succeeded", "succeeded"]
    versions = client.metadata.models.versions("retrained")
    assert [v.version for v in versions] == [1, 2]                # cached, the second would register nothing
    assert [v.metrics["mean"] for v in versions] == [2.0, 20.0]
    runs = [client.get_run(f.run_id) for f in firings]
    assert all(r.record.options["cache"] is False for r in runs)
