"""Capturing a step's stdout, stderr and ``logging`` output, per thread.

``sys.stdout`` and ``sys.stderr`` are process-wide, so they are replaced once by routers that send
writes from a thread running a step to that step's buffer and everything else to the original
stream. A root logging handler does the same for log records.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

MAX_LOG_CHARS = 2_000_000
_local = threading.local()
_install_lock = threading.Lock()
_installed = False


class _Router(io.TextIOBase):
    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        buf: io.StringIO | None = getattr(_local, "buffer", None)
        if buf is None:
            return self.original.write(text)
        return buf.write(text)

    def flush(self) -> None:
        if getattr(_local, "buffer", None) is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False if getattr(_local, "buffer", None) is not None else self.original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.original.fileno()


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buf: io.StringIO | None = getattr(_local, "buffer", None)
        if buf is not None:
            buf.write(self.format(record) + "\n")


def _install() -> None:
    """Put the routers in place (again, if someone replaced sys.stdout since) and the log handler once."""
    global _installed
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)  # type: ignore[assignment]
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)  # type: ignore[assignment]
        if _installed:
            return
        handler = _Handler(level=logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        if logging.getLogger().level > logging.INFO:
            logging.getLogger().setLevel(logging.INFO)
        _installed = True


@contextmanager
def captured(buffer: io.StringIO) -> Iterator[io.StringIO]:
    """Route this thread's prints and log records into ``buffer`` while the block runs."""
    _install()
    previous = getattr(_local, "buffer", None)
    _local.buffer = buffer
    try:
        yield buffer
    finally:
        _local.buffer = previous


def clip(text: str) -> str:
    """Keep the end of very long logs (the end holds the error)."""
    if len(text) <= MAX_LOG_CHARS:
        return text
    return f"[… {len(text) - MAX_LOG_CHARS} earlier characters dropped …]\n" + text[-MAX_LOG_CHARS:]
