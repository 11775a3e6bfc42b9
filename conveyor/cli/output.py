"""Printing for the CLI: rich consoles, tables, JSON, and durations."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any


def console() -> Any:
    from rich.console import Console

    return Console()


def error_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def print_json(data: Any) -> None:
    """Print JSON to stdout (machine-readable; no colour, no wrapping)."""
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode())
    sys.stdout.write("\n")


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def size(n: float | None) -> str:
    """Bytes, human-readable (binary units)."""
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


STATUS_STYLE = {"succeeded": "green", "cached": "cyan", "resumed": "cyan", "running": "yellow", "failed": "red",
                "skipped": "dim", "cancelled": "magenta", "interrupted": "magenta", "pending": "dim"}


def status(text: str) -> str:
    return f"[{STATUS_STYLE.get(text, 'white')}]{text}[/]"


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``-p key=value`` pairs; the pipeline coerces the text to each parameter's type."""
    from conveyor.errors import ParameterError

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"-p {item!r} is not key=value. Write e.g. -p rows=1000.")
        out[key.strip()] = value
    return out


def executor_help() -> str:
    """The ``--executor`` help: only executors whose dependencies are installed."""
    from conveyor.executors import registry

    return f"Where steps run: {' or '.join(registry.available())} (default: CONVEYOR_EXECUTOR or thread)."
