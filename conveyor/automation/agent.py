"""``conveyor agent``: one daemon for cron schedules, event sources, monitors and triggers.

Every tick it (1) fires schedules that are due, (2) runs monitors that are due and raises alerts,
(3) lists each data trigger's prefix and records new objects, and asks each stream trigger's
stream or queue whether messages wait (the run it starts consumes them, acknowledged only when
its step succeeds; see ``scan_stream_triggers``), (4) resets firings whose launcher
died, (5) launches pending firings, oldest first, within each source's concurrency limit. A firing
is a row before anything runs, and an object becomes "seen" in the same transaction as its firing,
so a restarted agent neither loses nor repeats work (at-least-once: a firing whose launch was cut
short, or that did not start, is launched again, up to ``CONVEYOR_AGENT_MAX_ATTEMPTS`` times).
Pipelines run in their own processes (``python -m conveyor.automation.launch``), which name
themselves on the firing, beat a heartbeat while they run and record their outcome themselves, so
stopping the agent never kills a run. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from conveyor.errors import InvalidRequest
from conveyor.runtime.processes import pid_alive

log = logging.getLogger("conveyor.automation")


def next_cron(cron: str, after: float) -> float:
    from croniter import croniter

    try:
        return float(croniter(cron, after).get_next(float))
    except (ValueError, KeyError) as exc:
        raise InvalidRequest(f"--cron {cron!r} is not a cron expression (e.g. \"0 3 * * *\"): {exc}",
                             field="cron") from None


def substitute(params: dict[str, Any], cause: dict[str, Any]) -> dict[str, str]:
    """Parameter values may name the cause: ``{object}`` (a data trigger's new object), ``{monitor}``."""
    out = {}
    for k, v in params.items():
        text = str(v)
        for name, value in cause.items():
            if isinstance(value, str | int | float):
                text = text.replace("{" + name + "}", str(value))
        out[k] = text
    return out


class Agent:
    """The daemon; ``tick()`` does one round (tests and ``--once`` call it directly)."""

    def __init__(self, client: Any, *, tick_s: float = 1.0, python: str | None = None,
                 deliver: bool = True, cwd: str | None = None) -> None:
        from conveyor.automation.webhooks import Deliverer

        self.client = client
        self.store = client.metadata.automation
        self.tick_s = tick_s
        self.python = python or sys.executable
        self.cwd = cwd or os.getcwd()
        self.deliverer = Deliverer(self.store) if deliver else None
        self.children: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._streams: dict[tuple[str, str], Any] = {}     # (trigger, location) -> its open source

    # --- the loop -----------------------------------------------------------------------------

    def run_forever(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("agent stopping (signal %d)", signum)
            self._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if self.deliverer is not None:
            self.deliverer.start()
        log.info("agent started (tick %.1fs)", self.tick_s)
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("agent tick failed; continuing")
                self._stop.wait(self.tick_s)
        finally:
            if self.deliverer is not None:
                self.deliverer.stop()
            log.info("agent stopped; %d launched runs keep running on their own", len(self._live()))

    def stop(self) -> None:
        self._stop.set()

    def tick(self, now: float | None = None) -> None:
        now = now or time.time()
        self.fire_schedules(now)
        self.check_monitors(now)
        self.scan_data_triggers()
        self.scan_stream_triggers(now)
        self.reset_dead_launchers(now)
        self.launch_pending()

    # --- sources ------------------------------------------------------------------------------

    def fire_schedules(self, now: float) -> list[str]:
        fired = []
        for s in self.store.schedules():
            if not s.enabled or s.next_at > now:
                continue
            fid = self.store.claim_due_schedule(s.name, s.next_at, next_cron(s.cron, now),
                                                {"kind": "schedule", "cron": s.cron, "due": s.next_at})
            if fid:
                fired.append(fid)
        return fired

    def check_monitors(self, now: float) -> None:
        from conveyor.automation.monitors import check_and_alert

        for monitor in self.store.claim_due_monitors(now):
            result, alert = check_and_alert(self.client, monitor)
            if alert is None or alert.suppressed:
                continue
            for trig in self.store.triggers("monitor", monitor.name):
                cause = {"kind": "monitor", "monitor": monitor.name, "alert": alert.id, "message": alert.message}
                if self.store.count_active(trig.name) >= trig.max_concurrent:
                    self.store.fire("trigger", trig.name, cause | {"skipped": "concurrency limit reached"},
                                    status="skipped")
                    log.info("trigger %s skipped: %d run(s) already active", trig.name, trig.max_concurrent)
                    continue
                self.store.fire("trigger", trig.name, cause)

    def scan_data_triggers(self) -> int:
        import fsspec

        new = 0
        for trig in self.store.triggers("data"):
            if not trig.enabled:
                continue
            try:
                fs, prefix = fsspec.core.url_to_fs(trig.on_value)
                found = fs.find(prefix)                     # a missing prefix lists as empty
            except Exception:
                log.exception("listing %s for trigger %s failed", trig.on_value, trig.name)
                continue
            seen = self.store.seen(trig.name)
            protocol = trig.on_value.split("://", 1)[0] + "://" if "://" in trig.on_value else ""
            for path in sorted(found):
                if path in seen or path.rsplit("/", 1)[-1].startswith((".", "_")):
                    continue
                if self.store.fire_for_object(trig.name, path, {"kind": "data", "object": protocol + path}):
                    new += 1
        return new

    def scan_stream_triggers(self, now: float | None = None) -> list[str]:
        """Fire each stream trigger whose Redis stream or SQS queue has messages waiting.

        Nothing is consumed here: the run reads the messages (``cv.data.read("{source}")`` in a
        step) and its step acknowledges them when it succeeds. A trigger does not fire while one of
        its firings is pending or running (that run takes what waits), and after failed runs it
        waits 1, 2, 4… up to 300 seconds before firing again on the same messages.
        """
        from conveyor.data.sources import open_source

        now = now or time.time()
        fired = []
        for trig in self.store.triggers("stream"):
            if not trig.enabled or self.store.count_active(trig.name) > 0:
                continue
            recent = self.store.firings(trig.name, limit=10)
            failures = 0
            for firing in recent:                                  # newest first
                if firing.status != "failed":
                    break
                failures += 1
            if failures and now - (recent[0].finished_at or recent[0].at) < min(300.0, 2.0 ** (failures - 1)):
                continue
            key = (trig.name, trig.on_value)
            try:
                source = self._streams.get(key) or open_source(trig.on_value)
                self._streams[key] = source
                waiting = source.waiting()
            except Exception as exc:
                self._streams.pop(key, None)
                log.warning("stream trigger %s: cannot look at its source: %s", trig.name, exc)
                continue
            if waiting > 0:
                fired.append(self.store.fire("trigger", trig.name, {"kind": "stream", "source": trig.on_value,
                                                                    "messages": waiting}))
                log.info("stream trigger %s: %d message(s) waiting in %s", trig.name, waiting, source.describe())
        return fired

    # --- running ------------------------------------------------------------------------------

    def _live(self) -> dict[str, subprocess.Popen]:
        # poll() also reaps: a launcher killed outright must not linger as a zombie that looks alive
        self.children = {k: p for k, p in self.children.items() if p.poll() is None}
        return self.children

    def reset_dead_launchers(self, now: float | None = None) -> list[str]:
        """Running firings whose launcher is gone: back to pending (or failed after the last attempt).

        Dead means: its pid no longer runs on this host, or (any host) its heartbeat is older than
        ``CONVEYOR_AGENT_HEARTBEAT_S``. Without this, one launcher that died after marking its
        firing running would hold a concurrency slot of its trigger forever.
        """
        now = now or time.time()
        settings = self.client.settings
        host = socket.gethostname()
        self._live()
        reset = []
        for f in self.store.running_firings():
            beat = f.heartbeat_at if f.heartbeat_at is not None else f.at
            reason = None
            if f.id in self.children:
                continue                                  # our own child, still running
            if f.launcher_pid and f.launcher_host == host and not pid_alive(f.launcher_pid):
                reason = f"launcher pid {f.launcher_pid} on {host} exited without recording an outcome"
            elif now - beat > settings.agent_heartbeat_s:
                reason = (f"launcher pid {f.launcher_pid} on {f.launcher_host} sent no heartbeat for "
                          f"{now - beat:.0f}s (limit {settings.agent_heartbeat_s:g}s)")
            if reason is None:
                continue
            status = self.store.retry_or_fail(f.id, reason, settings.agent_max_attempts, launcher_pid=f.launcher_pid)
            if status is not None:
                reset.append(f.id)
                orphans = self._close_orphaned_runs(f.id, reason)
                log.warning("firing %s of %s: %s; now %s%s", f.id, f.source, reason, status,
                            f" (its run {', '.join(orphans)} marked failed)" if orphans else "")
        return reset

    def _close_orphaned_runs(self, firing_id: str, reason: str) -> list[str]:
        """Runs a dead launcher started for ``firing_id`` would otherwise say ``running`` for ever."""
        runs, steps = self.client.metadata.runs, self.client.metadata.steps
        orphans = [r.id for r in runs.list(status="running", limit=500) if r.tags.get("firing") == firing_id]
        for run_id in orphans:
            steps.mark_unfinished(run_id, "interrupted", "the launcher running this step died")
            runs.set_status(run_id, "failed", error=f"interrupted: {reason}", event="interrupted", detail=reason)
        return orphans

    def launch_pending(self) -> list[str]:
        launched = []
        triggers = {t.name: t for t in self.store.triggers()}
        schedules = {s.name: s for s in self.store.schedules()}
        self._live()
        full: set[str] = set()
        for firing in self.store.pending_firings():          # oldest first
            if firing.id in self.children or firing.source in full:
                continue
            source = triggers.get(firing.source) if firing.source_kind == "trigger" else schedules.get(firing.source)
            if source is None:
                self.store.set_firing(firing.id, "failed", error=f"{firing.source_kind} '{firing.source}' was deleted")
                continue
            limit = getattr(source, "max_concurrent", 1)
            if self.store.count_active(firing.source, ("running",)) >= limit:
                full.add(firing.source)       # stays pending until a slot frees; later ones wait behind it
                continue
            if not self.store.claim_firing(firing.id):
                continue                      # another agent took it
            params = substitute(source.params or {}, firing.cause)
            cmd = [self.python, "-m", "conveyor.automation.launch", firing.id, source.target, json.dumps(params)]
            if getattr(source, "fresh", False):
                cmd.append("--fresh")
            try:
                proc = subprocess.Popen(cmd, cwd=self.cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env={**os.environ, **self._client_env()})
            except OSError as exc:
                self.store.retry_or_fail(firing.id, f"could not start {self.python}: {exc}",
                                         self.client.settings.agent_max_attempts)
                continue
            self.children[firing.id] = proc
            self.store.record_launcher(firing.id, proc.pid, socket.gethostname())
            launched.append(firing.id)
            log.info("%s %s fired (%s): running %s", firing.source_kind, firing.source,
                     firing.cause.get("kind"), source.target)
        return launched

    def _client_env(self) -> dict[str, str]:
        s = self.client.settings
        return {"CONVEYOR_HOME": str(s.home), "CONVEYOR_METADATA_URL": s.metadata_url,
                "CONVEYOR_ARTIFACT_ROOT": str(s.artifact_root),
                # the launcher retries and beats by the agent's policy, not by whatever its own environment says
                "CONVEYOR_AGENT_MAX_ATTEMPTS": str(s.agent_max_attempts),
                "CONVEYOR_AGENT_HEARTBEAT_S": str(s.agent_heartbeat_s)}

    def wait_for_children(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for proc in list(self.children.values()):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
