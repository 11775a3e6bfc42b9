"""The access log: one JSON line per request, written in batches by a background thread.

Writing and flushing a stream on every request costs more than a small model's prediction, so
requests only append a line to a list; a thread writes what gathered every ``interval_s`` and on
close. A full buffer drops lines (and counts them) instead of slowing requests down.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

import orjson


class AccessLog:
    """JSON lines to ``stream`` (default stderr), batched off the request path."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float = 0.25, max_lines: int = 200_000) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.max_lines = max_lines
        self.dropped = 0
        self._lines: list[bytes] = []
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="conveyor-access-log", daemon=True)
        self._thread.start()

    def write(self, **fields: Any) -> None:
        """Queue one line (list append: atomic under the GIL, no lock on the request path)."""
        if len(self._lines) >= self.max_lines:
            self.dropped += 1
            return
        self._lines.append(orjson.dumps(fields))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            lines, self._lines = self._lines, []
            if not lines:
                return
            text = b"\n".join(lines).decode() + "\n"
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):   # a closed or broken stream must not kill serving
                self.dropped += len(lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
