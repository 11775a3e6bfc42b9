"""One suite for every export target, unchanged: what each must write, refuse and let its own tools accept.

Each target has a module ``tests/export/validate_<target>.py`` with ``validate(result)``: it runs the
target's own library or tool on what was written and raises AssertionError with that tool's output.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.errors import ExportError
from conveyor.export import TARGETS, export, target
from conveyor.export.plan import Plan, Task
from conveyor.runtime.loader import load_pipeline

HERE = Path(__file__).resolve().parent
BRANCHY = f"{HERE / 'pipelines' / 'branchy.py'}:branchy"
QUICKSTART = "conveyor.examples.quickstart:training"


def _validator(name: str):
    return importlib.import_module(f"tests.export.validate_{name}").validate


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
@pytest.mark.parametrize("ref", [QUICKSTART, BRANCHY], ids=["quickstart", "branchy"])
def test_every_target_exports_and_its_own_tool_accepts(name: str, ref: str, tmp_path: Path) -> None:
    result = export(ref, name, image="registry.example/conveyor/demo:1", out=tmp_path / name,
                    artifact_root="s3://conveyor-demo/artifacts", project_dir=HERE.parents[1])
    assert result.files and all(f.exists() for f in result.files)
    assert (tmp_path / name / "image" / "Dockerfile").exists()
    assert result.commands and any(name.split("stepfunctions")[0][:3] in c.lower() or "docker" in c
                                   for c in result.commands)
    _validator(name)(result)


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_refuses_a_plan_with_a_missing_task_or_a_cycle(name: str) -> None:
    pipeline = load_pipeline(BRANCHY)
    from conveyor.export.plan import lower

    plan = lower(pipeline, {}, ref="branchy.py:branchy", project_dir="/p", image="i")
    tasks = dict(plan.tasks)
    tasks["total"] = dataclasses.replace(tasks["total"], upstream=("score", "nowhere"))
    with pytest.raises(ExportError, match="nowhere"):
        target(name).compile(dataclasses.replace(plan, tasks=tasks), _options())
    cyclic = dict(plan.tasks)
    cyclic["make_shards"] = dataclasses.replace(cyclic["make_shards"], upstream=("report",))
    with pytest.raises(ExportError, match="cycle"):
        target(name).compile(dataclasses.replace(plan, tasks=cyclic), _options())


def _options():
    from conveyor.export import ExportOptions

    return ExportOptions({})


@cv.step
def items() -> list[int]:
    return [1, 2]


@cv.step
def double(x: int) -> int:
    return 2 * x


@cv.step
def show(x: object) -> str:
    return str(x)


@cv.pipeline
def gated_on_a_fan_out():
    doubled = double.map(x=items())
    with cv.when(doubled):
        show(doubled)


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_refuses_a_condition_on_a_fanned_out_step(name: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="fanned-out step 'double'.*join"):
        export(gated_on_a_fan_out, name, image="i", out=tmp_path, artifact_root="s3://b/a",
               project_dir=HERE.parents[1], build_context=False)


def test_a_database_password_never_reaches_a_definition(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="password"):
        export(BRANCHY, "argo", image="i", out=tmp_path, metadata_url="postgresql://u:secret@db/conveyor",
               project_dir=HERE.parents[1], build_context=False)
    assert not any(tmp_path.rglob("*.yaml"))


def test_the_plan_maps_the_constructs_the_targets_need() -> None:
    from conveyor.export.plan import lower

    plan: Plan = lower(load_pipeline(BRANCHY), {"n": "4"}, ref="b.py:branchy", project_dir="/p", image="i")
    score: Task = plan.tasks["score"]
    assert score.fan_out and score.fan_out.source == "make_shards" and score.fan_out.output == "fanout_score"
    assert [e.name for e in plan.tasks["make_shards"].emits] == ["fanout_score"]
    assert [g.decider for g in plan.tasks["publish"].gates] == ["total"]
    assert plan.tasks["report"].gates == ()
    assert score.retries == 2 and score.timeout == 120 and score.memory_bytes == 256 * 2**20
    assert score.deadline_s is not None and score.deadline_s >= 3 * 120
    assert {p.name: (p.type, p.default) for p in plan.params} == {
        "n": ("integer", 4), "scale": ("number", 1.5), "threshold": ("number", 5.0), "label": ("string", "run"),
        "verbose": ("boolean", True)}
    argv = plan.command(score, run_id="RUN", map_index="IDX")
    assert argv[:5] == ["python", "-m", "conveyor", "step", "exec"] and "IDX" in argv and "n=4" in argv
