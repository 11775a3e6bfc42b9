"""Stores for the cost tests: a client on a local folder or on the S3 emulator, and ways to age runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from conveyor.config import Settings, load_settings
from conveyor.store.metadata import tables as t

DAY = 86400.0


@pytest.fixture(params=["local", "s3"])
def root_client(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A client whose artifact root is a local folder, then a bucket on the S3 emulator."""
    from conveyor.runtime.client import Client
    from tests.store.conftest import open_root

    root = open_root(request.param, request, tmp_path, monkeypatch)
    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", root.url)
    c = Client(load_settings())
    c.root = root
    yield c
    c.close()


def age_run(metadata: Any, run_id: str, days: float) -> None:
    """Move a run, its step runs and its artifacts ``days`` into the past."""
    shift = days * DAY
    with metadata.artifacts.write() as conn:
        conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(
            created_at=t.runs.c.created_at - shift, started_at=t.runs.c.started_at - shift,
            ended_at=t.runs.c.ended_at - shift))
        conn.execute(update(t.step_runs).where(t.step_runs.c.run_id == run_id).values(
            started_at=t.step_runs.c.started_at - shift, ended_at=t.step_runs.c.ended_at - shift))
        conn.execute(update(t.artifacts).where(t.artifacts.c.run_id == run_id).values(
            created_at=t.artifacts.c.created_at - shift))


def now() -> float:
    return time.time()


def add_attempts(metadata: Any, run_id: str, measures: dict[str, list[tuple[float, float | None, int | None,
                                                                            float | None]]]) -> None:
    """Replace the ``step_attempts`` rows the executor wrote for a run's step runs with known measures:
    step name -> [(wall_s, cpu_s, peak_rss, gpu_s)]."""
    from sqlalchemy import insert, select

    drop_attempts(metadata, run_id)
    with metadata.artifacts.write() as conn:
        steps = {row.step: row for row in conn.execute(
            select(t.step_runs.c.id, t.step_runs.c.step, t.step_runs.c.started_at)
            .where(t.step_runs.c.run_id == run_id))}
        rows = []
        for step, attempts in measures.items():
            s = steps[step]
            for i, (wall, cpu, rss, gpu) in enumerate(attempts, start=1):
                rows.append(dict(step_run_id=s.id, run_id=run_id, attempt=i, status="completed", executor="thread",
                                 started_at=s.started_at, ended_at=(s.started_at or 0) + wall, wall_s=wall, cpu_s=cpu,
                                 peak_rss_bytes=rss, gpu_s=gpu))
        conn.execute(insert(t.step_attempts), rows)


def drop_attempts(metadata: Any, run_id: str) -> None:
    """Remove a run's attempt rows and the attempts kept on its step runs, as for a run recorded before
    attempts were measured."""
    from sqlalchemy import delete, update

    with metadata.artifacts.write() as conn:
        conn.execute(delete(t.step_attempts).where(t.step_attempts.c.run_id == run_id))
        conn.execute(update(t.step_runs).where(t.step_runs.c.run_id == run_id)
                     .values({c.name: None for c in t.step_runs.c if c.name.startswith("used_")}))
