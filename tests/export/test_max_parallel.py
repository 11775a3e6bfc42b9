"""``.map(max_parallel=N)`` in the exports: each target's own construct for a fan-out's concurrency
(KFP's ParallelFor parallelism, Step Functions' Map MaxConcurrency, Airflow's
max_active_tis_per_dagrun; Argo, which has no limit per looped task, caps the whole workflow at the
tightest one); a fan-out without it gets none. Airflow's DagBag check of the same
setting is in test_airflow.py (the ``shapes`` pipeline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

import conveyor as cv
from conveyor.export import ExportOptions, target
from conveyor.export.plan import lower


@cv.step
def shards(n: int) -> list[int]:
    return list(range(n))


@cv.step
def score(x: int) -> int:
    return x * 2


@cv.step
def total(xs: list[int]) -> int:
    return sum(xs)


@cv.pipeline
def limited(n: int = 4):
    total(score.map(x=shards(n), max_parallel=2))          # a list known at run time
    total(score.map(x=[1, 2, 3], max_parallel=3))          # a list known at export
    total(score.map(x=[4, 5]))                              # no limit


def _files(name: str, options: dict[str, str] | None = None) -> dict[str, str]:
    plan = lower(limited, {}, ref="p.py:limited", project_dir="/p", image="reg/img:1")
    assert [plan.tasks[t].fan_out.max_parallel for t in ("score", "score_2", "score_3")] == [2, 3, None]
    return target(name).compile(plan, ExportOptions(options or {}))


def _walk(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for v in node.values():
            found += _walk(v)
    elif isinstance(node, list):
        for v in node:
            found += _walk(v)
    return found


def test_kfp_loops_carry_a_parallelism_limit() -> None:
    (text,) = _files("kfp").values()
    ir = yaml.safe_load(text)
    loops = {d["taskInfo"]["name"]: d.get("iteratorPolicy") for d in _walk(ir)
             if "parameterIterator" in d and "taskInfo" in d}
    assert loops == {"for-loop-score": {"parallelismLimit": 2}, "for-loop-score-2": {"parallelismLimit": 3},
                     "for-loop-score-3": None}


def test_step_functions_maps_take_the_tighter_of_the_step_and_the_export_limit() -> None:
    def limits(options: dict[str, str] | None = None) -> dict[str, Any]:
        machine = json.loads(_files("stepfunctions", options)["state-machine.asl.json"])
        return {d["ItemProcessor"]["StartAt"].split(" [")[0]: d.get("MaxConcurrency") for d in _walk(machine)
                if d.get("Type") == "Map"}

    assert limits() == {"score": 2, "score_2": 3, "score_3": None}
    assert limits({"max-concurrency": "2"}) == {"score": 2, "score_2": 2, "score_3": 2}


def test_airflow_mapped_tasks_get_max_active_tis_per_dagrun() -> None:
    (text,) = _files("airflow").values()
    blocks = {name: next(b for b in text.split("\n\n") if f"task_id={name!r}," in b)
              for name in ("score", "score_2", "score_3")}
    assert "max_active_tis_per_dagrun=2" in blocks["score"] and "max_active_tis_per_dagrun=3" in blocks["score_2"]
    assert "max_active_tis_per_dagrun" not in blocks["score_3"]


def test_argo_caps_the_workflow_at_the_tightest_limit() -> None:
    (text,) = _files("argo").values()
    assert yaml.safe_load(text)["spec"]["parallelism"] == 2

    @cv.pipeline
    def unlimited():
        total(score.map(x=[1, 2]))

    plan = lower(unlimited, {}, ref="p.py:unlimited", project_dir="/p", image="reg/img:1")
    (text,) = target("argo").compile(plan, ExportOptions({})).values()
    assert "parallelism" not in yaml.safe_load(text)["spec"]
