"""Runs one firing's pipeline in its own process and records the outcome on the firing.

``python -m conveyor.automation.launch FIRING_ID FILE:PIPELINE PARAMS_JSON [--fresh]``

The launcher names itself on the firing (pid and host) and refreshes the firing's heartbeat while
the run goes, so an agent can tell a dead launcher from a slow run. A firing whose pipeline cannot
be loaded, or whose parameters do not fit it, did not start: it goes back to pending with the
error recorded and is tried again on a later tick, up to ``CONVEYOR_AGENT_MAX_ATTEMPTS`` launches.
A run that started and failed is an outcome, recorded as such and not retried.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from typing import Any

log = logging.getLogger("conveyor.automation")


class Heartbeat:
    """A daemon thread that refreshes a firing's heartbeat every ``interval_s`` until stopped."""

    def __init__(self, store: Any, firing_id: str, pid: int, interval_s: float) -> None:
        self.store, self.firing_id, self.pid, self.interval_s = store, firing_id, pid, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conveyor-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.store.heartbeat(self.firing_id, self.pid):
                    log.warning("firing %s is no longer held by this launcher; heartbeat stops", self.firing_id)
                    return
            except Exception:       # a database hiccup must not kill the run; the next beat retries
                log.warning("heartbeat of firing %s failed", self.firing_id, exc_info=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    from conveyor.runtime.client import Client
    from conveyor.runtime.loader import load_pipeline

    args = argv if argv is not None else sys.argv[1:]
    firing_id, target, params_json = args[:3]
    fresh = "--fresh" in args[3:]
    client = Client()
    settings = client.settings
    store = client.metadata.automation
    pid = os.getpid()
    store.record_launcher(firing_id, pid, socket.gethostname())
    beat = Heartbeat(store, firing_id, pid, max(settings.agent_heartbeat_s / 4, 0.05))
    beat.start()
    try:
        params = json.loads(params_json)
        try:
            pipeline = load_pipeline(target)
            pipeline.resolve(params, from_text=True)
        except Exception as exc:
            status = store.retry_or_fail(firing_id, f"did not start: {type(exc).__name__}: {exc}",
                                         settings.agent_max_attempts, launcher_pid=pid)
            log.error("firing %s did not start (%s): %s", firing_id, status, exc)
            return 1
        try:
            run = client.run_pipeline(pipeline, params, cache=not fresh, from_text=True,
                                      tags={"firing": firing_id}, raise_on_failure=False)
        except Exception as exc:
            store.set_firing(firing_id, "failed", error=f"{type(exc).__name__}: {exc}")
            return 1
    finally:
        beat.stop()
    status = "succeeded" if run.status == "succeeded" else "failed"
    store.set_firing(firing_id, status, run_id=run.id,
                     error=None if status == "succeeded" else f"run {run.id} ended {run.status}")
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
