"""A live view of a run's steps while it executes, and the summary printed after."""

from __future__ import annotations

import time
from typing import Any

from conveyor.cli.output import duration, status


class LiveSteps:
    """Engine observer that renders step states as a rich table, refreshed in place."""

    def __init__(self, console: Any, title: str) -> None:
        from rich.live import Live

        self.console = console
        self.title = title
        self.rows: dict[str, dict[str, Any]] = {}
        self.live = Live(self._table(), console=console, refresh_per_second=8, transient=True)

    def __enter__(self) -> LiveSteps:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self._table())
        self.live.__exit__(*exc)

    def __call__(self, event: str, name: str, info: dict[str, Any]) -> None:
        row = self.rows.setdefault(name, {"status": "pending", "start": None, "note": ""})
        row["status"] = event
        if event == "running":
            row["start"] = time.monotonic()
        if "duration" in info:
            row["duration"] = info["duration"]
        elif event in ("succeeded", "failed") and row["start"] is not None:
            row["duration"] = time.monotonic() - row["start"]
        row["note"] = info.get("reason") or info.get("error") or (
            f"{info['attempts']} attempts" if info.get("attempts", 1) > 1 else "")
        self.live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", expand=False)
        for col in ("step", "status", "duration", "note"):
            table.add_column(col)
        now = time.monotonic()
        for name, row in self.rows.items():
            took = row.get("duration")
            if took is None and row["status"] == "running" and row["start"] is not None:
                took = now - row["start"]
            table.add_row(name, status(row["status"]), duration(took), clip_note(str(row["note"])))
        return table


def clip_note(text: str, limit: int = 160) -> str:
    """One line of at most ``limit`` characters (a reason or an error's first line)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def step_note(step: Any) -> str:
    """Why a step is in its state: a skipped step's reason, a failed step's error."""
    if step.status == "skipped":
        return clip_note(step.reason or "")
    if step.status in ("failed", "interrupted", "cancelled"):
        return clip_note(step.error or step.reason or "")
    return ""


def run_summary(console: Any, run: Any) -> None:
    """The table printed after a run: each step's status, duration and cache hit, then the metrics."""
    from rich.table import Table

    steps = run.steps
    table = Table(title=f"Run {run.id} · {run.pipeline} · {status(run.status)}", title_justify="left")
    for col in ("step", "status", "duration", "cached", "attempts", "reason"):
        table.add_column(col)
    for s in steps.values():
        table.add_row(s.name, status(s.status), duration(s.duration), "yes" if s.cache_hit else "",
                      str(s.attempts) if s.attempts else "", step_note(s))
    console.print(table)
    metrics = run.metrics
    if metrics:
        mt = Table(title="Metrics", title_justify="left")
        mt.add_column("metric")
        mt.add_column("value", justify="right")
        for k, v in sorted(metrics.items()):
            mt.add_row(k, f"{v:.4g}")
        console.print(mt)
