"""What each endpoint and model version costs to serve: requests, errors, CPU and wall time.

The request path only adds to counters in memory (``add``, ``error``: a lock and four additions,
no clock beyond the CPU clock read around the prediction). A background thread writes them to
``serving_usage`` every ``interval_s`` (``CONVEYOR_SERVE_USAGE_INTERVAL_S``) and ``close`` writes
the rest at shutdown. A write that fails (the database is down) is logged and its counts are kept
for the next one: a request never waits for, nor fails because of, the database.

CPU is the serving thread's own (``time.thread_time``) over validation, the model call, logging
and metrics of each prediction; a model that computes in threads of its own (BLAS, ``n_jobs``)
spends more than is counted. Wall time is the same section's.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable

from conveyor.store.metadata.serving_usage import UsageRecord

log = logging.getLogger("conveyor.serving")

Key = tuple[str, str | None, int | None]   # (endpoint, model, version)


class _Tally:
    __slots__ = ("cpu_s", "errors", "requests", "wall_s")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0


class UsageMeter:
    """Counts per (endpoint, model, version) in memory; ``write`` persists a period's records."""

    def __init__(self, write: Callable[[Iterable[UsageRecord]], object], *, interval_s: float = 60.0,
                 host: str | None = None) -> None:
        self._write = write
        self.interval_s = interval_s
        self.host = host or socket.gethostname()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._tallies: dict[Key, _Tally] = {}
        self._since = time.time()        # start of the period not yet written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the request path -------------------------------------------------------------------

    def add(self, endpoint: str, model: str | None, version: int | None, cpu_s: float, wall_s: float,
            requests: int = 1) -> None:
        """Count ``requests`` answered by this version, with the CPU and wall time they took."""
        key = (endpoint, model, version)
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally()
            tally.requests += requests
            tally.cpu_s += cpu_s
            tally.wall_s += wall_s

    def error(self, endpoint: str, model: str | None, version: int | None) -> None:
        """Count one failed request (a 4xx or 5xx answer)."""
        key = (endpoint, model, version)
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally()
            tally.requests += 1
            tally.errors += 1

    # --- writing ----------------------------------------------------------------------------

    def start(self) -> None:
        """Write every ``interval_s`` from a background thread until ``close``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="conveyor-usage", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def pending(self) -> dict[Key, tuple[int, int, float, float]]:
        """The counts not written yet: (requests, errors, cpu_s, wall_s) per (endpoint, model, version)."""
        with self._lock:
            return {k: (v.requests, v.errors, v.cpu_s, v.wall_s) for k, v in self._tallies.items()}

    def flush(self) -> bool:
        """Write the counts since the last write; on failure keep them for the next one. True when written."""
        with self._flushing:
            with self._lock:
                tallies, self._tallies = self._tallies, {}
                start, end = self._since, time.time()
                self._since = end
            if not tallies:
                return True
            records = [UsageRecord(endpoint=e, model=m, version=v, period_start=start, period_end=end,
                                   requests=t.requests, errors=t.errors, cpu_s=t.cpu_s, wall_s=t.wall_s,
                                   host=self.host)
                       for (e, m, v), t in tallies.items()]
            try:
                self._write(records)
            except Exception as exc:   # the database is down or locked: never the requests' problem
                self._merge_back(tallies, start)
                log.warning("could not write serving usage (%d requests since %s) to the metadata database: %s; "
                            "keeping the counts for the next write", sum(t.requests for t in tallies.values()),
                            time.strftime("%H:%M:%S", time.localtime(start)), _first_line(exc))
                return False
            return True

    def _merge_back(self, tallies: dict[Key, _Tally], start: float) -> None:
        with self._lock:
            for key, old in tallies.items():
                tally = self._tallies.get(key)
                if tally is None:
                    self._tallies[key] = old
                    continue
                tally.requests += old.requests
                tally.errors += old.errors
                tally.cpu_s += old.cpu_s
                tally.wall_s += old.wall_s
            self._since = start

    def close(self) -> None:
        """Stop the thread and write what is left (at shutdown: a failure now is logged, the counts lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["UsageMeter"]
