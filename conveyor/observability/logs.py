"""One log format for the CLI, the engine, the agent and the server.

``CONVEYOR_LOG_FORMAT=json`` makes every Conveyor process write one JSON object per line to
stderr, which Fluentd, Cloud Logging, CloudWatch and Azure Monitor ingest as they are:

    {"time": "2026-12-02T04:50:01.123Z", "level": "WARNING", "logger": "conveyor.hooks",
     "message": "...", "run_id": "3f2a...", "step": "train", "request_id": null, ...}

``run_id`` and ``step`` come from where the line was logged (inside a step, or the engine of a
run); ``request_id`` from the server's request (passed as ``extra``); an exception's traceback
goes in ``exception``. Other ``extra`` fields are kept when JSON can hold them. ``text`` (the
default) stays the short human format.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

# the run an engine is walking in this context (steps carry their own context, see runtime.context)
current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("conveyor_run", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, run/step/request ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        from conveyor.runtime.context import current_step

        step = current_step()
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "run_id": step.run_id if step is not None else current_run.get(),
            "step": step.node_name if step is not None else None,
            "request_id": getattr(record, "request_id", None),
        }
        if step is not None and step.attempt:
            line["attempt"] = step.attempt
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: int = logging.INFO, *, fmt: str | None = None, text_format: str = TEXT_FORMAT) -> str:
    """Send log records to stderr in the configured format (once; a second call changes nothing)."""
    from conveyor.config import log_format

    fmt = fmt or log_format()
    root = logging.getLogger()
    if any(getattr(h, "_conveyor", False) for h in root.handlers):
        return fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text_format))
    handler._conveyor = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return fmt
