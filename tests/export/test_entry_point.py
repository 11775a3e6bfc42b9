"""The step entry point every exported task runs: same cache key, records, resume and emits as a local run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conveyor.export.plan import Plan, lower
from conveyor.runtime.client import Client
from conveyor.runtime.imports import import_run
from conveyor.runtime.loader import load_pipeline
from tests.export.orchestrate import run_plan

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRANCHY = "tests/export/pipelines/branchy.py:branchy"


def _plan(project: Path, ref: str = BRANCHY, **params: str) -> Plan:
    pipeline = load_pipeline(str(project / ref.split(":")[0]) + ":" + ref.split(":")[1])
    return lower(pipeline, params, ref=ref, project_dir=str(project), image="unused", python=sys.executable)


def _statuses(client: Client, run_id: str) -> dict[str, str]:
    return {name: s.status for name, s in client.get_run(run_id).steps.items()}


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    return tmp_path / "shared-root"


def _env(shared: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CONVEYOR_ARTIFACT_ROOT": str(shared), "CONVEYOR_HOME": str(tmp_path / "task-home"), **extra}


@pytest.mark.slow
def test_tasks_without_a_database_record_beside_outputs_and_import_as_a_run(client, shared: Path,
                                                                           tmp_path: Path) -> None:
    flaky = tmp_path / "flaky"
    plan = _plan(REPO)
    ex = run_plan(plan, "exp-1", _env(shared, tmp_path, BRANCHY_FLAKY_DIR=str(flaky)), tmp_path)
    assert ex.ok, ex.output
    assert ex.emits["make_shards"] == {"fanout_score": [0, 1, 2]}
    assert ex.emits["total"] == {"cond_0": True}
    assert (shared / "runs" / "exp-1" / "run.json").exists()
    assert not (tmp_path / "task-home").exists() or not list((tmp_path / "task-home").rglob("*.db"))

    report = import_run(client, "exp-1", str(shared))
    assert report.status == "succeeded" and report.steps == 7
    run = client.get_run("exp-1")
    assert run.status == "succeeded" and run.parameters["n"] == 3
    assert _statuses(client, "exp-1") == {"make_shards": "succeeded", "score[0]": "succeeded", "score[1]": "succeeded",
                                          "score[2]": "succeeded", "total": "succeeded", "publish": "succeeded",
                                          "report": "succeeded"}
    steps = run.steps
    assert all(steps[f"score[{i}]"].attempts == 2 for i in range(3))    # each shard failed once, the retry healed it
    shard = [(a["attempt"], a["status"]) for a in client.metadata.steps.attempts("exp-1") if a["name"] == "score[0]"]
    assert shard == [(1, "failed"), (2, "completed")]           # measured by the task, imported with its record
    assert run.output("total") == {"total": 18.0, "count": 3}
    assert run.output("publish") == "run:18.0"
    assert run.metrics["total"] == 18.0
    edges = client.metadata.artifacts.step_edges(steps["total"].id)
    shard_outputs = client.metadata.steps.outputs([steps[f"score[{i}]"].id for i in range(3)])
    assert sorted(e.artifact_id for e in edges if e.direction == "input") == sorted(
        o["output"].id for o in shard_outputs.values())      # lineage from every shard
    assert import_run(client, "exp-1", str(shared)).steps == 0     # a second import adds nothing


@pytest.mark.slow
def test_a_step_cached_on_a_laptop_hits_in_the_cloud_and_back(client, shared: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", str(shared))
    local = Client()
    pipeline = load_pipeline(str(REPO / BRANCHY.split(":")[0]) + ":branchy")
    first = local.run_pipeline(pipeline, {"n": 2})
    assert first.status == "succeeded"
    # the image holds a copy of the project at another path: the same code, so the same keys
    image_project = tmp_path / "opt" / "project"
    shutil.copytree(REPO / "tests" / "export" / "pipelines", image_project / "tests" / "export" / "pipelines")
    plan = _plan(image_project, n="2")
    ex = run_plan(plan, "cloud-1", _env(shared, tmp_path), tmp_path)
    assert ex.ok, ex.output
    import_run(local, "cloud-1", str(shared))
    assert set(_statuses(local, "cloud-1").values()) == {"cached"}
    # and the other way round: computed in the cloud first, then a hit on the laptop
    ex = run_plan(_plan(image_project, n="4"), "cloud-2", _env(shared, tmp_path), tmp_path)
    assert ex.ok, ex.output
    again = local.run_pipeline(pipeline, {"n": 4})
    statuses = {n: s.status for n, s in again.steps.items()}
    assert statuses["make_shards"] == "cached" and statuses["score[3]"] == "cached" and statuses["total"] == "cached"


@pytest.mark.slow
def test_tasks_with_a_database_record_there_and_the_last_task_ends_the_run(shared: Path, tmp_path: Path,
                                                                         settings) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ex = run_plan(_plan(REPO, threshold="100"), "db-1", _env(shared, tmp_path, CONVEYOR_METADATA_URL=url), tmp_path)
    assert ex.ok, ex.output
    assert ex.skipped == ["publish"] and ex.emits["total"] == {"cond_0": False}
    import dataclasses

    from conveyor.config import Settings

    db = Client(dataclasses.replace(settings, metadata_url=url, artifact_root=str(shared)))
    run = db.get_run("db-1")
    assert run.status == "succeeded"
    statuses = _statuses(db, "db-1")
    assert statuses["publish"] == "skipped" and statuses["report"] == "succeeded"
    assert "condition not met" in (run.steps["publish"].reason or "")
    assert not (shared / "runs").exists()     # with a database nothing is written beside the outputs
    rows = db.metadata.steps.attempts("db-1")  # each task measured its attempts, in a child process of its own
    assert rows and {a["executor"] for a in rows} == {"task"} and {a["status"] for a in rows} == {"completed"}
    assert all(a["cpu_s"] is not None and a["peak_rss_bytes"] > 0 for a in rows)
    assert isinstance(Settings, type)


@pytest.mark.slow
def test_a_failed_task_fails_fast_when_retried_and_resume_reuses_what_finished(client, shared: Path,
                                                                                tmp_path: Path) -> None:
    marker = tmp_path / "always-fail"
    marker.mkdir()
    plan = _plan(REPO)
    env = _env(shared, tmp_path, BRANCHY_FLAKY_DIR=str(marker))
    (marker / "shard-1").write_text("")   # shard 1 heals on its first retry; the others too: make one fail for good
    ex = run_plan(plan, "res-1", {**env, "BRANCHY_FLAKY_DIR": ""}, tmp_path, params={"scale": "not-a-number"})
    assert ex.codes["make_shards"] == 2 and "scale" in ex.output["make_shards"]   # a bad parameter is a usage error

    broken = tmp_path / "broken"
    shutil.copytree(REPO / "tests" / "export" / "pipelines", broken / "tests" / "export" / "pipelines")
    source = broken / "tests" / "export" / "pipelines" / "branchy.py"
    source.write_text(source.read_text().replace('    return {"total": sum(scores)', '    raise RuntimeError("boom")\n'
                                                 '    return {"total": sum(scores)'))
    ex = run_plan(_plan(broken), "res-2", _env(shared, tmp_path), tmp_path)
    assert ex.codes["total"] == 1 and "boom" in ex.output["total"] and "publish" in ex.skipped
    again = run_plan(_plan(broken), "res-2", _env(shared, tmp_path), tmp_path)   # the target retries the task
    assert again.codes["total"] == 1 and "already failed for good" in again.output["total"]

    ex = run_plan(_plan(REPO), "res-3", _env(shared, tmp_path), tmp_path, resume_from="res-2")
    assert ex.ok, ex.output
    import_run(client, "res-3", str(shared))
    steps = client.get_run("res-3").steps
    assert steps["make_shards"].status == "cached" and steps["make_shards"].reason == "resumed from run res-2"
    assert steps["total"].status == "succeeded"


def test_the_entry_point_refuses_a_changed_shape_and_an_unknown_step(tmp_path: Path, shared: Path) -> None:
    plan = _plan(REPO)
    task = plan.tasks["make_shards"]
    env = {"CONVEYOR_ARTIFACT_ROOT": str(shared), "CONVEYOR_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"}
    argv = plan.command(task, run_id="shape-1")
    argv[argv.index("--shape") + 1] = "0123456789abcdef"
    done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "another shape" in done.stderr and "Export the pipeline again" in done.stderr
    argv = plan.command(task, run_id="shape-1")
    argv[argv.index("--node") + 1] = "nope"
    done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "no step 'nope'" in done.stderr
    assert not (shared / "runs" / "shape-1" / "steps").exists()


@pytest.mark.slow
def test_all_elements_in_one_task_sharded_and_emits_as_files(client, shared: Path, tmp_path: Path) -> None:
    plan = _plan(REPO, n="5")
    env = {**_env(shared, tmp_path), "PATH": "/usr/bin:/bin"}
    emit = tmp_path / "emit"
    first = plan.command(plan.tasks["make_shards"], run_id="all-1", emit_dir=str(emit))
    assert subprocess.run([sys.executable, *first[1:]], env=env, cwd=tmp_path).returncode == 0
    assert json.loads((emit / "fanout_score").read_text()) == [0, 1, 2, 3, 4]
    for shard in ("0/2", "1/2"):   # two hosts of one job, each its share
        argv = plan.command(plan.tasks["score"], run_id="all-1", map_index="all")
        done = subprocess.run([sys.executable, *argv[1:]], env={**env, "CONVEYOR_MAP_SHARD": shard}, cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    argv = plan.command(plan.tasks["total"], run_id="all-1", emit_dir=str(emit))
    done = subprocess.run([sys.executable, *argv[1:]], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (emit / "cond_0").read_text() == "true"
    import_run(client, "all-1", str(shared))
    assert client.get_run("all-1").output("total") == {"total": 45.0, "count": 5}


@pytest.mark.slow
def test_a_model_registered_in_a_task_without_a_database_is_registered_by_the_import(
        client, shared: Path, tmp_path: Path) -> None:
    plan = _plan(REPO, "tests/export/pipelines/registers.py:registers")
    ex = run_plan(plan, "reg-1", _env(shared, tmp_path), tmp_path)
    assert ex.ok, ex.output
    assert not list((tmp_path / "task-home").rglob("*.db"))      # the task reached no database
    assert client.registry.list_models() == []

    report = import_run(client, "reg-1", str(shared))          # copies bytes into the client's own root
    assert report.models == ("exported-model:1",)
    version = client.registry.resolve("exported-model")
    train_run = client.get_run("reg-1").steps["train"]
    assert (version.version, version.run_id, version.step_run_id) == (1, "reg-1", train_run.id)
    assert version.metrics["r2"] == pytest.approx(1.0) and version.tags == {"trained_on": 20}
    assert version.signature is not None and [c["name"] for c in version.signature["inputs"]] == ["x"]
    model = client.registry.load("exported-model:1")
    assert model.predict(pd.DataFrame({"x": [10.0]}))[0] == pytest.approx(31.0)
    assert client.registry.profile("exported-model:1") is not None     # the monitoring reference came along
    assert client.get_run("reg-1").output("train", "output") == 0                # the task saw "not numbered yet"
    lineage = client.registry.lineage("exported-model:1")
    assert lineage.run["id"] == "reg-1" and {s["name"] for s in lineage.steps} == {"features", "train"}
    assert [i["step"] for i in lineage.inputs] == ["train"]             # the training frame, by content hash

    again = import_run(client, "reg-1", str(shared))
    assert again.models == () and [v.version for v in client.registry.versions("exported-model")] == [1]
