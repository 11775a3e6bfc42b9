"""Exported tasks on every artifact root: records beside the outputs, import, and cache hits both ways."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conveyor.export.plan import lower
from conveyor.runtime.loader import load_pipeline
from tests.export.orchestrate import run_plan
from tests.store.conftest import ArtifactRoot

import conveyor as cv

pytestmark = pytest.mark.slow


@cv.step
def noise(seed: int):
    import numpy as np

    return np.random.default_rng(seed).normal(size=50_000)   # over the inline limit: an object in the store


@cv.step
def mean(values) -> float:
    return float(values.mean())


@cv.pipeline
def arrays(seed: int = 3):
    mean(noise(seed))
REPO = Path(__file__).resolve().parents[2]
BRANCHY = REPO / "tests" / "export" / "pipelines" / "branchy.py"


@pytest.mark.timeout(300)
def test_tasks_record_import_and_share_the_cache_on_every_root(artifact_root: ArtifactRoot, client,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client
    from conveyor.runtime.imports import import_run

    pipeline = load_pipeline(f"{BRANCHY}:branchy")
    plan = lower(pipeline, {"n": "2"}, ref="tests/export/pipelines/branchy.py:branchy", project_dir=str(REPO),
                 image="-", python=sys.executable)
    root = artifact_root.join("artifacts")
    ex = run_plan(plan, "remote-1", {"CONVEYOR_ARTIFACT_ROOT": root, "CONVEYOR_HOME": str(tmp_path / "task")}, tmp_path)
    assert ex.ok, ex.output
    keys = artifact_root.keys()
    assert "artifacts/runs/remote-1/run.json" in keys
    assert any(k.startswith("artifacts/runs/remote-1/steps/score") for k in keys)
    assert any(k.startswith("artifacts/cache/") for k in keys)

    report = import_run(client, "remote-1", root)
    assert report.status == "succeeded" and report.steps == 6
    assert client.get_run("remote-1").output("total") == {"total": 9.0, "count": 2}

    plan = lower(load_pipeline(f"{__file__}:arrays"), {}, ref=f"{Path(__file__).relative_to(REPO)}:arrays",
                 project_dir=str(REPO), image="-", python=sys.executable)
    ex = run_plan(plan, "remote-2", {"CONVEYOR_ARTIFACT_ROOT": root, "CONVEYOR_HOME": str(tmp_path / "task")}, tmp_path)
    assert ex.ok, ex.output
    report = import_run(client, "remote-2", root)            # into a local home: the array's bytes are copied over
    assert report.copied == 1
    import numpy as np

    assert client.get_run("remote-2").output("noise").shape == (50_000,)
    assert client.get_run("remote-2").output("mean") == pytest.approx(np.random.default_rng(3).normal(size=50_000).mean())

    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", root)        # a laptop on the same root hits every step
    laptop = Client(load_settings())
    again = laptop.run_pipeline(pipeline, {"n": 2})
    assert {s.status for s in again.steps.values()} == {"cached"}
