"""The KFP and Vertex AI targets: the IR's mapping, what they refuse, and runs under ``kfp.local``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.errors import ExportError
from conveyor.export import ExportOptions, export, target
from conveyor.export.kfp import IR_FILE, task_ids, vertex_machine
from conveyor.export.plan import lower
from conveyor.runtime.loader import load_pipeline
from tests import warm_cli
from tests.export.pipelines.nested import add, numbers
from tests.export.validate_kfp import inspect, kfp_venv, validate
from tests.export.venvs import run_in

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRANCHY = f"{HERE / 'pipelines' / 'branchy.py'}:branchy"
NESTED = f"{HERE / 'pipelines' / 'nested.py'}:nested"
QUICKSTART = "conveyor.examples.quickstart:training"


def _export(ref, name: str, out: Path, **kw):
    kw.setdefault("artifact_root", "s3://bucket/root")
    return export(ref, name, image="registry.example/demo:1", out=out, project_dir=REPO, build_context=False, **kw)


@cv.step(cpus=2, memory="1.5Gi", gpus=1, retries=3, backoff=2, timeout=60)
def train(rows: int) -> int:
    return rows


@cv.step
def evaluate(model: int) -> float:
    return model / 2


@cv.pipeline
def heavy(rows: int = 10, tags: dict | None = None):
    evaluate(train(rows))


@cv.pipeline
def crossed(n: int = 3):
    base = numbers(n)
    size = add(base)
    with cv.when(size >= 3):
        left = add(base)
    with cv.when(size >= 4):
        right = add(base)
    add([left, right])


@cv.pipeline
def reordered(n: int = 3):
    base = numbers(n)
    size = add(base)
    with cv.when(size >= 3):
        numbers(1)
    with cv.when(size >= 4):
        inner = add(base)
        with cv.when(size >= 3):
            add([inner])


@cv.pipeline
def clashing(conveyor_run_id: str = "x"):
    evaluate(train(1))


def test_parameters_are_typed_with_their_exported_defaults_and_resume_is_one(tmp_path: Path) -> None:
    result = _export(BRANCHY, "kfp", tmp_path, params={"n": 4, "label": "nightly"}, resume="run-41")
    got = validate(result)
    assert got["inputs"]["n"] == {"type": "NUMBER_INTEGER", "default": 4.0}
    assert got["inputs"]["label"] == {"type": "STRING", "default": "nightly"}
    assert got["inputs"]["verbose"] == {"type": "BOOLEAN", "default": True}
    assert got["inputs"]["conveyor_resume_from"] == {"type": "STRING", "default": "run-41"}
    score = got["executors"]["exec-score"]["command"][-1]
    assert '"--resume-from", "{conveyor:resume}"' in score and '"--map-index", "{conveyor:map_index}"' in score
    # json parameters travel as their JSON text
    plan_json = _export(f"{__file__}:heavy", "kfp", tmp_path / "heavy", params={"tags": {"a": 1}},
                        options={"accelerator_type": "nvidia.com/gpu"})
    assert inspect(tmp_path / "heavy" / IR_FILE)["inputs"]["tags"] == {"type": "STRING", "default": '{"a":1}'}
    assert plan_json.plan.param("tags").type == "json"


def test_resources_retries_and_deadlines_map_to_kfp_and_kubernetes_fields(tmp_path: Path) -> None:
    result = _export(f"{__file__}:heavy", "kfp", tmp_path, instance_types={"train": "m5.xlarge"})
    got = validate(result)
    res = got["executors"]["exec-train"]["resources"]
    assert res["resourceCpuLimit"] == "2" and res["resourceMemoryLimit"] == "1536Mi"
    assert res["accelerator"] == {"resourceType": "nvidia.com/gpu", "resourceCount": "1", "type": "nvidia.com/gpu",
                                  "count": "1"}
    assert "resources" not in got["executors"]["exec-evaluate"]
    assert got["dags"]["root"]["train"]["retry"] == {"maxRetryCount": 3, "backoffDuration": "2s",
                                                     "backoffFactor": 2.0, "backoffMaxDuration": "30s"}
    k8s = got["platforms"]["kubernetes"]
    assert k8s["exec-train"] == {"activeDeadlineSeconds": str(result.plan.tasks["train"].deadline_s),
                                 "nodeSelector": {"labels": {"node.kubernetes.io/instance-type": "m5.xlarge"}}}
    assert "exec-evaluate" not in k8s
    # the database URL (with its password) comes from a Kubernetes Secret, never from the definition
    secret = validate(_export(f"{__file__}:heavy", "kfp", tmp_path / "secret",
                              options={"metadata_secret": "conveyor-db:dsn"}))["platforms"]["kubernetes"]
    assert secret["exec-evaluate"]["secretAsEnv"][0]["keyToEnv"] == [{"secretKey": "dsn",
                                                                      "envVar": "CONVEYOR_METADATA_URL"}]
    assert secret["exec-evaluate"]["secretAsEnv"][0]["secretName"] == "conveyor-db"
    with pytest.raises(ExportError, match="no option metadata_secret"):
        _export(f"{__file__}:heavy", "vertex", tmp_path / "v", options={"metadata_secret": "x"})
    assert got["dags"]["root"]["evaluate"]["after"] == ["train"]


def test_vertex_takes_machine_types_and_needs_an_accelerator_type(tmp_path: Path) -> None:
    result = _export(f"{__file__}:heavy", "vertex", tmp_path, instance_types={"train": "a2-highgpu-1g"})
    got = validate(result)
    res = got["executors"]["exec-train"]["resources"]
    assert res["resourceCpuLimit"] == "12" and res["resourceMemoryLimit"] == "85Gi"
    assert res["accelerator"]["resourceType"] == "NVIDIA_TESLA_A100" and res["accelerator"]["resourceCount"] == "1"
    assert not got["platforms"]
    assert any("aiplatform.PipelineJob" in c and IR_FILE in c for c in result.commands)
    assert any(c.startswith("gcloud ") for c in result.commands)
    with pytest.raises(ExportError, match=r"Step 'train' asks for 1 GPU.*accelerator_type=NVIDIA_TESLA_T4"):
        _export(f"{__file__}:heavy", "vertex", tmp_path / "no-gpu-type")
    with pytest.raises(ExportError, match=r"Step 'train'.*'m5.xlarge' is not a Vertex AI machine type"):
        _export(f"{__file__}:heavy", "vertex", tmp_path / "aws", instance_types={"*": "m5.xlarge"})
    with pytest.raises(ExportError, match=r"Step 'train' asks for 2 CPUs.*n1-standard-1 has \(1 CPUs, 3.75Gi\).*"
                                          r"larger machine type"):
        _export(f"{__file__}:heavy", "vertex", tmp_path / "small", instance_types={"train": "n1-standard-1"},
                options={"accelerator_type": "NVIDIA_TESLA_T4"})
    assert vertex_machine("n1-highmem-8", "s").memory == 52 * 2**30
    assert vertex_machine("g2-standard-24", "s").gpus == 2


def test_refusals_name_the_step_the_construct_and_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="parameter named conveyor_run_id.*Rename"):
        _export(f"{__file__}:clashing", "kfp", tmp_path, options={"accelerator_type": "x"})
    # a step waiting for two steps under different conditions, neither inside the other
    with pytest.raises(ExportError, match=r"Step 'add_4' waits for 'add_2'.*'add_3'.*neither condition holds the "
                                          r"other.*dsl.If.*nested `with cv.when"):
        _export(f"{__file__}:crossed", "kfp", tmp_path / "crossed")
    # the same conditions entered in another order nest as the steps that wait for each other need
    validate(_export(f"{__file__}:reordered", "kfp", tmp_path / "reordered"))


def test_the_ir_is_deterministic_and_each_component_is_python(tmp_path: Path) -> None:
    plan = lower(load_pipeline(NESTED), {}, ref="nested.py:nested", project_dir="/p", image="i")
    first = target("kfp").compile(plan, ExportOptions({}))
    assert first == target("kfp").compile(plan, ExportOptions({}))
    assert "conveyor" not in sys.modules.get("kfp", type("m", (), {"__name__": "conveyor"})).__name__  # no SDK here


def test_nested_conditions_and_fan_outs_compile_to_nested_dags(tmp_path: Path) -> None:
    result = _export(NESTED, "kfp", tmp_path)
    got = validate(result)
    ids = task_ids(result.plan)
    # a loop whose source runs in the same DAG iterates inside a group that takes the list as its input
    assert "fan-out-square" in got["dags"]["root"]
    cond = got["dags"]["root"]["condition-1"]
    assert cond["condition"] == "inputs.parameter_values['pipelinechannel--add--cond_0'] == true"
    inner = got["dags"]["comp-condition-1"]
    # sourced outside the condition: the list comes down as the condition's input, the loop iterates over it
    assert "for-loop-square-3" in inner and "fan-out-square-2" in inner and "condition-2" in inner
    assert inner["for-loop-square-3"]["inputs"]["pipelinechannel--numbers--fanout_square_3"] == {
        "componentInputParameter": "pipelinechannel--numbers--fanout_square_3"}
    assert cond["inputs"]["pipelinechannel--numbers--fanout_square_3"]["taskOutputParameter"]["producerTask"] == \
        ids["numbers"]
    assert got["dags"]["comp-condition-1"]["condition-2"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--add-2--cond_1'] == true"


def test_the_component_function_fills_the_argv_and_returns_what_was_emitted(tmp_path: Path) -> None:
    from conveyor.export.kfp_ir import RUNNER_SOURCE

    scope: dict = {}
    exec(RUNNER_SOURCE, scope)      # the function every component's module defines, run as KFP's executor would
    step = scope["_conveyor_step"]
    script = ("import json, sys; a = sys.argv[1:]; json.dump({'cond_0': '--resume-from' in a, 'fanout_x': a[:4]}, "
              "open(a[a.index('--emit-json') + 1], 'w'))")
    argv = [sys.executable, "-c", script, "-p", "n={conveyor:n}", "-p", "on={conveyor:on}", "--resume-from",
            "{conveyor:resume}", "--emit-json", "{conveyor:emit}"]
    cond, seen = step(argv, {"{conveyor:n}": 3, "{conveyor:on}": True, "{conveyor:resume}": ""}, ["cond_0", "fanout_x"])
    assert cond is False and seen == ["-p", "n=3", "-p", "on=true"]          # no run to resume: the flag is dropped
    values = {"{conveyor:n}": 3, "{conveyor:on}": False, "{conveyor:resume}": "run-1"}
    cond, _ = step(argv, values, ["cond_0", "fanout_x"])
    assert cond is True
    with pytest.raises(RuntimeError, match="exited with status 1.*conveyor runs import"):
        step([sys.executable, "-c", "raise SystemExit(1)"], {}, [])


def _run_kfp_local(ir: Path, env: dict[str, str], cwd: Path, *args: str) -> str:
    done = run_in(kfp_venv(), [str(HERE / "kfp_local_run.py"), str(ir), str(cwd / "kfp-root"), *args], env=env,
                  cwd=cwd, timeout=600)
    assert done.returncode == 0 and "KFP-LOCAL-RUN-SUCCEEDED" in done.stdout, \
        f"kfp.local failed ({done.returncode}):\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _conveyor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` in a real process forked warm (``tests/warm_cli.py``)."""
    return warm_cli.run(args, env=env, cwd=os.getcwd(), timeout=300)


def _task_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(tmp_path / "task-home"), **extra)
    return env


@pytest.mark.slow
def test_branchy_runs_end_to_end_under_kfp_local_and_imports_with_lineage(settings, tmp_path: Path) -> None:
    root = tmp_path / "shared-root"
    result = _export(BRANCHY, "kfp", tmp_path / "export", artifact_root=str(root), workdir=str(REPO),
                     python=sys.executable, options={"install_kfp": "false"})
    ir = tmp_path / "export" / IR_FILE
    env = _task_env(tmp_path, BRANCHY_FLAKY_DIR=str(tmp_path / "flaky"))
    _run_kfp_local(ir, env, tmp_path)
    runs = sorted(p.name for p in (root / "runs").iterdir())
    assert len(runs) == 1, runs          # every task recorded into the one run named by KFP's job id
    first = runs[0]

    # no database: import the run into this test's store, then read it as any run
    home = {**{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
            "CONVEYOR_HOME": str(tmp_path / "home")}
    done = _conveyor("runs", "import", first, "--from", str(root), env=home)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = _conveyor("runs", "show", first, "--json", env=home)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    data = json.loads(shown.stdout)
    steps = {s["name"]: s for s in data["steps"]} if isinstance(data["steps"], list) else data["steps"]
    assert {n: s["status"] for n, s in steps.items()} == {
        "make_shards": "succeeded", "score[0]": "succeeded", "score[1]": "succeeded", "score[2]": "succeeded",
        "total": "succeeded", "publish": "succeeded", "report": "succeeded"}
    assert all(steps[f"score[{i}]"]["attempts"] == 2 for i in range(3))   # each shard failed once, retried
    outputs = {(o["step"], o["name"]) for o in data["outputs"]}
    assert {("make_shards", "output"), ("total", "output"), ("publish", "output")} <= outputs

    from conveyor.runtime.client import Client

    client = Client()
    run = client.get_run(first)
    assert run.output("total") == {"total": 18.0, "count": 3} and run.output("publish") == "run:18.0"
    edges = client.metadata.artifacts.step_edges(run.steps["total"].id)
    shard_outputs = client.metadata.steps.outputs([run.steps[f"score[{i}]"].id for i in range(3)])
    assert sorted(e.artifact_id for e in edges if e.direction == "input") == sorted(
        o["output"].id for o in shard_outputs.values())                    # lineage from every shard

    # the same export again, with a threshold the total does not clear: every step that runs is a cache
    # hit, and the condition (decided by KFP's dsl.If on total's emitted boolean) skips publish
    _run_kfp_local(ir, env, tmp_path, "threshold=100.0")
    second = next(p.name for p in (root / "runs").iterdir() if p.name != first)
    done = _conveyor("runs", "import", second, "--from", str(root), env=home)
    assert done.returncode == 0, done.stdout + done.stderr
    again = client.get_run(second)
    statuses = {n: s.status for n, s in again.steps.items()}
    assert statuses.pop("publish") == "skipped"
    assert statuses == {n: "cached" for n in ("make_shards", "score[0]", "score[1]", "score[2]", "total", "report")}
    assert result.plan.tasks["publish"].gates[0].decider == "total"

    # resuming through the KFP run's own parameter: every step that finished in the first run is reused
    _run_kfp_local(ir, env, tmp_path, f'conveyor_resume_from="{first}"')
    third = next(p.name for p in (root / "runs").iterdir() if p.name not in (first, second))
    assert _conveyor("runs", "import", third, "--from", str(root), env=home).returncode == 0
    resumed = client.get_run(third).steps
    assert {n: (s.status, s.reason) for n, s in resumed.items()} == {
        n: ("cached", f"resumed from run {first}") for n in ("make_shards", "score[0]", "score[1]", "score[2]",
                                                             "total", "publish", "report")}
    client.close()


@pytest.mark.slow
def test_nested_conditions_and_fan_outs_run_under_kfp_local(settings, tmp_path: Path) -> None:
    root = tmp_path / "shared-root"
    _export(NESTED, "kfp", tmp_path / "export", artifact_root=str(root), workdir=str(REPO), python=sys.executable,
            options={"install_kfp": "false"})
    _run_kfp_local(tmp_path / "export" / IR_FILE, _task_env(tmp_path), tmp_path, "n=2")
    (run_id,) = [p.name for p in (root / "runs").iterdir()]
    from conveyor.runtime.client import Client
    from conveyor.runtime.imports import import_run

    client = Client()
    import_run(client, run_id, str(root))
    run = client.get_run(run_id)
    statuses = {n: s.status for n, s in run.steps.items()}
    # n=2: 1+4 clears the outer condition (>= 5); the inner one (>= 14) is not met, so 'tag' is skipped
    assert statuses.pop("tag") == "skipped"
    assert set(statuses.values()) <= {"succeeded", "cached"}, statuses
    assert statuses["numbers_2"] == "cached"          # the same step on the same inputs, earlier in this run
    assert sorted(statuses) == sorted(["numbers", "square[0]", "square[1]", "add", "numbers_2", "square_2[0]",
                                       "square_2[1]", "square_3[0]", "square_3[1]", "add_2", "add_3", "tag_2"])
    assert run.output("add_3") == 5 and run.output("tag_2") == "outside:5"        # sourced outside the condition
    client.close()


@pytest.mark.slow
def test_the_quickstart_runs_end_to_end_under_kfp_local(settings, tmp_path: Path) -> None:
    root = tmp_path / "shared-root"
    _export(QUICKSTART, "kfp", tmp_path / "export", artifact_root=str(root), workdir=str(REPO), python=sys.executable,
            allow_pickle=True, options={"install_kfp": "false"})
    _run_kfp_local(tmp_path / "export" / IR_FILE, _task_env(tmp_path), tmp_path, "rows=1000")
    (run_id,) = [p.name for p in (root / "runs").iterdir()]
    from conveyor.runtime.client import Client
    from conveyor.runtime.imports import import_run

    client = Client()
    import_run(client, run_id, str(root))
    run = client.get_run(run_id)
    assert {n: s.status for n, s in run.steps.items()} == {
        n: "succeeded" for n in ("load", "validate", "split", "features", "train[0]", "train[1]", "train[2]",
                                 "evaluate", "pick_best", "publish")}          # the static fan-out: three candidates
    assert run.output("evaluate")["auc"] >= 0.7 and run.parameters["rows"] == 1000
    edges = client.metadata.artifacts.step_edges(run.steps["evaluate"].id)
    trained = client.metadata.steps.outputs([run.steps[f"train[{i}]"].id for i in range(3)])
    assert {o["output"].id for o in trained.values()} <= {e.artifact_id for e in edges if e.direction == "input"}
    client.close()


def test_the_yaml_writer_round_trips_through_pyyaml(tmp_path: Path) -> None:
    from conveyor.export.yaml_text import to_yaml

    tricky = ["yes", "No", "n", "on", "null", "~", "1e3", "0x1F", "12:30", "- a", "a: b", "#x", "'q'", '"dq"', "",
              " lead", "trail ", "tab\there", "ünï €", "emoji \U0001F600", "del\x7f", "nel\x85", "bom\ufeff",
              "a\nb", "a\n", "a\n\n", "\nlead", "  a\n  b", "x\r\ny", "{{$}}", "[x]", "%x", "@x", "`x`", "!x", "&a",
              "*a"]
    value = {"strings": tricky, "keys": {t: i for i, t in enumerate(tricky)}, "nested": [[1, 2.5, True, None], {}],
             "items": [{"name": "A", "value": "b\nc\n"}, []], "n": 3, "f": 0.1}
    path = tmp_path / "doc.yaml"
    path.write_text(to_yaml(value))
    (tmp_path / "doc.json").write_text(json.dumps(value))
    check = ("import json, sys, yaml; a = yaml.safe_load(open(sys.argv[1])); b = json.load(open(sys.argv[2])); "
             "print(json.dumps([k for k in b if a.get(k) != b[k]])); sys.exit(a != b)")
    done = run_in(kfp_venv(), ["-c", check, str(path), str(tmp_path / "doc.json")])
    assert done.returncode == 0, f"PyYAML read another value for {done.stdout}{done.stderr}\n{path.read_text()}"
