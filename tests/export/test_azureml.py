"""The Azure ML export: what azure-ai-ml loads from the pipeline YAML, what is refused, and a run of its commands.

Every YAML here goes through ``tests/export/validate_azureml.load``: the pinned azure-ai-ml loads
it with ``load_job`` and validates it (``_validate()``), and the tests assert on what it loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

import conveyor as cv
from conveyor.errors import ExportError
from conveyor.export import ExportOptions, export, target
from conveyor.export.azureml import EMIT_FILE
from conveyor.export.plan import RESUME_PARAM, lower
from conveyor.runtime.loader import load_pipeline
from tests.export.validate_azureml import check, load_many

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BRANCHY = f"{HERE / 'pipelines' / 'branchy.py'}:branchy"


def _export(pipeline: Any, tmp_path: Path, **kw: Any):
    kw.setdefault("artifact_root", "s3://conveyor-demo/artifacts")
    return export(pipeline, "azureml", image="registry.example/conveyor/demo:1", out=tmp_path / "azureml",
                  project_dir=ROOT, build_context=False, **kw)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every export these tests read, loaded by azure-ai-ml in one interpreter: name -> (result, what it loaded)."""
    tmp = tmp_path_factory.mktemp("azureml")
    results = {
        "params": _export(BRANCHY, tmp / "params", params={"n": 4, "label": "nightly"}, resume="run-0042"),
        "resources": _export(BRANCHY, tmp / "resources", instance_types={"score": "Standard_D4s_v3"},
                             options={"compute": "cpu-cluster", "experiment": "nightly", "map_shards": "3"},
                             metadata_url="postgresql://db.internal/conveyor"),
        "nested": _export(nested, tmp / "nested"),
        "static": _export(static_fan, tmp / "static"),
        "gated_fan": _export(gated_fan, tmp / "gated_fan"),
        "kinds": _export(kinds, tmp / "kinds"),
        "tampered": _export(BRANCHY, tmp / "tampered"),
        "rebound": _export(BRANCHY, tmp / "rebound"),
        "local": export(BRANCHY, "azureml", image="registry.example/conveyor/demo:1", out=tmp / "local" / "azureml",
                        artifact_root=str(tmp / "local" / "artifacts"), project_dir=ROOT, workdir=str(ROOT),
                        python=sys.executable, build_context=False),
    }
    tampered = results["tampered"].files[0]
    tampered.write_text(tampered.read_text().replace("type: integer", "type: int", 1))
    rebound = results["rebound"].files[0]
    rebound.write_text(rebound.read_text().replace("${{parent.jobs.publish}}", "${{parent.jobs.report}}"))
    by_path = load_many([r.files[0] for r in results.values()], strict=False)
    return {name: (r, by_path[str(r.files[0])]) for name, r in results.items()}


def _checked(loaded: dict[str, tuple[Any, dict[str, Any]]], name: str) -> tuple[Any, dict[str, Any]]:
    result, job = loaded[name]
    assert "error" not in job, job.get("error")
    check(job, result.plan)
    return result, job


# --- what azure-ai-ml loads -------------------------------------------------------------------------

@pytest.mark.slow
def test_parameters_are_typed_inputs_with_the_exported_defaults_and_the_resume_parameter(loaded) -> None:
    _, job = _checked(loaded, "params")
    assert job["inputs"] == {"n": 4, "scale": 1.5, "threshold": 5.0, "label": "nightly", "verbose": True,
                                RESUME_PARAM: "run-0042"}
    score = job["jobs"]["score"]
    assert {k: v["type"] for k, v in score["component_inputs"].items() if not k.startswith("after_")} == {
        "n": "integer", "scale": "number", "threshold": "number", "label": "string", "verbose": "boolean",
        RESUME_PARAM: "string"}
    # the resume run id is optional: without a value, Azure ML leaves --resume-from out of the command
    assert score["component_inputs"][RESUME_PARAM]["optional"] is True
    assert score["inputs"][RESUME_PARAM] == f"${{{{parent.inputs.{RESUME_PARAM}}}}}"
    assert re.search(r"\$\[\[--resume-from '\$\{\{inputs\.conveyor_resume_from\}\}'\]\]", score["command"])
    assert "-p 'n=${{inputs.n}}'" in score["command"]


@pytest.mark.slow
def test_resources_compute_deadline_environment_and_sharded_fan_out(loaded) -> None:
    result, job = _checked(loaded, "resources")
    assert job["default_compute"] == "cpu-cluster" and job["experiment_name"] == "nightly"
    assert yaml.safe_load(result.files[0].read_text())["settings"]["default_compute"] == "azureml:cpu-cluster"
    score = job["jobs"]["score"]
    assert score["instance_type"] == "Standard_D4s_v3" and score["instance_count"] == 3
    assert score["docker_args"] == f"--cpus=1 --memory={256 * 2**20}"
    assert score["distribution"] == "PyTorchDistribution"
    assert score["command"].startswith('CONVEYOR_MAP_SHARD="$RANK/3" ') and "--map-index all" in score["command"]
    assert score["timeout"] is None       # every element in one job: no deadline is known at export
    assert score["environment_variables"]["CONVEYOR_METADATA_URL"] == "postgresql://db.internal/conveyor"
    total = job["jobs"]["total"]
    assert total["instance_type"] is None and total["timeout"] is None and total["distribution"] is None


def test_without_compute_the_pipeline_runs_on_serverless_compute(tmp_path: Path) -> None:
    text = _export(BRANCHY, tmp_path).files[0].read_text()
    assert "  default_compute: serverless\n" in text
    assert "is_deterministic: false" in text     # Azure ML must never reuse a node without the entry point


@cv.step
def measure(x: int) -> int:
    return x * 3


@cv.step
def refine(x: int) -> int:
    return x + 1


@cv.step
def ship(x: int) -> str:
    return f"shipped {x}"


@cv.pipeline
def nested(x: int = 2, limit: int = 10):
    m = measure(x)
    with cv.when(m > 1):
        r = refine(m)
        with cv.when(r < limit):
            ship(r)


@pytest.mark.slow
def test_nested_conditions_put_a_step_in_the_true_block_of_each(loaded) -> None:
    _, job = _checked(loaded, "nested")
    blocks = {n: sorted(j["true_block"]) for n, j in job["jobs"].items() if j["type"] == "if_else"}
    assert blocks == {"if_cond_0": ["refine", "ship"], "if_cond_1": ["ship"]}
    assert job["jobs"]["if_cond_1"]["condition"] == "refine.cond_1"


@cv.step(timeout=30, retries=1, backoff=1)
def timed(x: int) -> int:
    return x * 2


@cv.pipeline
def static_fan(scale: float = 2.0):
    doubled = timed.map(x=[1, 2, 3])
    ship(doubled)


@pytest.mark.slow
def test_a_static_fan_out_is_a_parallel_for_over_the_element_indices(loaded) -> None:
    result, job = _checked(loaded, "static")
    loop = job["jobs"]["timed"]
    assert loop == {"type": "parallel_for", "body": "timed_element",
                    "items": [{"map_index": 0}, {"map_index": 1}, {"map_index": 2}]}
    body = job["jobs"]["timed_element"]
    assert body["component_inputs"]["map_index"]["type"] == "integer"
    # one element per job: its deadline is every attempt, the backoff and start-up
    assert body["timeout"] == result.plan.tasks["timed"].deadline_s == 30 * 2 + 1 + 600
    # the join waits for the loop's aggregated output
    assert job["jobs"]["ship"]["component_inputs"]["after_timed"]["type"] == "mltable"


@cv.pipeline
def gated_fan():
    flag = refine(1)
    with cv.when(flag > 1):
        ship(timed.map(x=[1, 2]))


@pytest.mark.slow
def test_a_gated_static_fan_out_is_one_node_in_the_true_block(loaded) -> None:
    _, job = _checked(loaded, "gated_fan")
    assert "timed_element" not in job["jobs"] and "--map-index all" in job["jobs"]["timed"]["command"]
    assert sorted(job["jobs"]["if_cond_0"]["true_block"]) == ["ship", "timed"]


@cv.step
def pick(mode: str, sizes: list) -> int:
    return len(sizes) if mode == "fast" else 0


@cv.pipeline
def kinds(mode: Literal["fast", "slow"] = "fast", sizes: list = [1, 2], note: str = 'say "hi" & $HOME',  # noqa: B006
          limit: int = None):  # noqa: RUF013
    pick(mode, sizes)


@pytest.mark.slow
def test_a_json_parameter_is_json_text_and_a_literal_one_an_enum(loaded) -> None:
    _, job = _checked(loaded, "kinds")
    assert job["inputs"]["sizes"] == "[1,2]" and job["inputs"]["note"] == 'say "hi" & $HOME'
    inputs = job["jobs"]["pick"]["component_inputs"]
    assert inputs["sizes"]["type"] == "string" and inputs["mode"]["type"] == "string"
    assert inputs["mode"]["enum"] == ["fast", "slow"]
    # no value: no pipeline input (Azure ML's cannot be null), an optional -p, the declared default at run time
    assert "limit" not in job["inputs"] and inputs["limit"] == {"type": "integer", "optional": True}
    assert "$[[-p 'limit=${{inputs.limit}}']]" in job["jobs"]["pick"]["command"]


def test_a_string_parameter_holding_a_single_quote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Parameter 'note'.*single quote.*without a single quote"):
        _export(kinds, tmp_path, params={"note": "it's"})


@cv.step(name="if_cond_0")
def clash_gate(x: int) -> int:
    return x


@cv.pipeline
def gate_clash(x: int = 1):
    m = measure(x)
    with cv.when(m > 1):
        clash_gate(m)


def test_a_step_named_like_a_condition_node_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Step 'if_cond_0'.*if_else node of condition cond_0.*Rename"):
        _export(gate_clash, tmp_path)


@cv.pipeline
def empty_fan():
    ship(measure.map(x=[]))


def test_an_empty_static_list_runs_as_one_node_over_all_elements(tmp_path: Path) -> None:
    text = _export(empty_fan, tmp_path).files[0].read_text()
    assert "parallel_for" not in text and "--map-index all" in text


def test_next_commands_build_push_and_create_the_job_with_the_control_flow_flag(tmp_path: Path) -> None:
    result = _export(BRANCHY, tmp_path)
    commands = [c for c in result.commands if not c.startswith("#")]
    assert commands[0].startswith("docker build") and commands[1].startswith("docker push")
    assert commands[2] == f"AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED=true az ml job create --file {result.files[0]}"
    # the image pins this environment; a gate's decider publishes its condition with mlflow and azureml-mlflow
    has = [importlib.util.find_spec("mlflow") is not None, _installed("azureml-mlflow")]
    notes = [c for c in result.commands if c.startswith("#")]
    assert bool(notes) == (not all(has)), notes
    assert not notes or "pip install" in notes[0] and "azureml-mlflow" in notes[0]
    plain = _export(measure_only, tmp_path)
    assert plain.commands == [*plain.commands[:2], f"az ml job create --file {plain.files[0]}"]


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


@cv.pipeline
def measure_only(x: int = 1):
    measure(x)


def test_the_yaml_is_deterministic(tmp_path: Path) -> None:
    plan = lower(load_pipeline(BRANCHY), {}, ref="b.py:branchy", project_dir="/p", image="i")
    tgt = target("azureml")
    assert tgt.compile(plan, ExportOptions({})) == tgt.compile(plan, ExportOptions({}))


# --- refused --------------------------------------------------------------------------------------

@cv.step(gpus=1)
def fit(x: int) -> int:
    return x


@cv.pipeline
def on_gpus(x: int = 1):
    fit(x)


def test_gpus_without_an_instance_type_are_refused_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Step 'fit': gpus=1.*VM size.*--instance-type fit="):
        _export(on_gpus, tmp_path)
    loaded = _export(on_gpus, tmp_path, instance_types={"fit": "Standard_NC6s_v3"}).files[0].read_text()
    assert "instance_type: Standard_NC6s_v3" in loaded


@cv.step(name="Measure")
def measure_upper(x: int) -> int:
    return x


@cv.pipeline
def clashing(x: int = 1):
    measure(x)
    measure_upper(x)


def test_steps_whose_node_names_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"'measure' and 'Measure' both become the Azure ML node 'measure'.*Rename"):
        _export(clashing, tmp_path)


@cv.step
def timed_element(x: int) -> int:
    return x


@cv.pipeline
def body_clash():
    timed.map(x=[1, 2])
    timed_element(1)


def test_a_step_named_like_a_fan_outs_body_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Step 'timed_element': the Azure ML node 'timed_element'.*Rename"):
        _export(body_clash, tmp_path)


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_map_shards_option_is_refused(value: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=rf"map_shards={value!r}.*positive integer"):
        _export(BRANCHY, tmp_path, options={"map_shards": value})


def test_an_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no option region.*compute, experiment, map_shards"):
        _export(BRANCHY, tmp_path, options={"region": "westeurope"})


# --- the commands, run as Azure ML runs them ---------------------------------------------------------

def _substitute(command: str, values: dict[str, Any]) -> str:
    """Azure ML's part: ``${{inputs.X}}`` becomes the value, ``$[[...]]`` goes when its inputs have none."""
    def text(v: Any) -> str:
        return str(v)    # Azure ML writes a boolean as Python does: True / False

    def optional(m: re.Match[str]) -> str:
        names = re.findall(r"\$\{\{inputs\.(\w+)\}\}", m.group(1))
        return m.group(1) if all(values.get(n) not in (None, "") for n in names) else ""

    command = re.sub(r"\$\[\[(.*?)\]\]", optional, command)
    return re.sub(r"\$\{\{inputs\.(\w+)\}\}", lambda m: text(values[m.group(1)]), command)


def run_like_azure_ml(loaded: dict[str, Any], overrides: dict[str, Any], tmp: Path, run_id: str) -> dict[str, str]:
    """Run every node's command with bash in data-binding order, skipping what a false if_else controls.

    What Azure ML itself does is played here: input substitution, the root run id in the
    environment, reading a control output (from the file the entry point emitted, which the task
    publishes as its run's control property in Azure ML).
    """
    jobs = loaded["jobs"]
    params = {**loaded["inputs"], **overrides}
    controlled: dict[str, list[tuple[str, str]]] = {}
    for node in jobs.values():
        if node["type"] == "if_else":
            decider, _, output = node["condition"].partition(".")
            for block in node["true_block"]:
                controlled.setdefault(block, []).append((decider, output))
    bodies = {j["body"]: n for n, j in jobs.items() if j["type"] == "parallel_for"}
    runnable = [n for n, j in jobs.items() if j["type"] in ("command", "parallel_for") and n not in bodies]
    state: dict[str, str] = {}
    controls: dict[tuple[str, str], bool] = {}
    while len(state) < len(runnable):
        for name in runnable:
            if name in state:
                continue
            command_node = jobs[jobs[name]["body"]] if name in bodies.values() else jobs[name]
            ups = [v.removeprefix("${{parent.jobs.").split(".")[0] for k, v in command_node["inputs"].items()
                   if k.startswith("after_")]
            if any(u not in state for u in ups):
                continue
            if any(not controls.get(c, False) for c in controlled.get(name, [])):
                state[name] = "skipped"
                continue
            assert all(state[u] == "ran" for u in ups), f"{name} waits for a skipped node outside its if_else"
            items = jobs[name]["items"] if name in bodies.values() else [{}]
            for item in items:
                values = {k: params[v.removeprefix("${{parent.inputs.").removesuffix("}}")]
                          for k, v in command_node["inputs"].items() if str(v).startswith("${{parent.inputs.")}
                emit = tmp / f"emit-{name}.json"
                command = _substitute(command_node["command"], {**values, **item}).replace(EMIT_FILE, str(emit))
                command = command.split(" && ")[0]      # the publish step, which talks to Azure ML's run history
                env = {**os.environ, **command_node["environment_variables"], "AZUREML_ROOT_RUN_ID": run_id}
                done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp,
                                      timeout=300)
                assert done.returncode == 0, f"{name}: {command}\n{done.stdout}\n{done.stderr}"
                if emit.exists():
                    controls.update({(name, k): v for k, v in json.loads(emit.read_text()).items()
                                     if isinstance(v, bool)})
            state[name] = "ran"
    return state


@pytest.mark.slow
def test_the_exported_commands_run_the_pipeline_as_azure_ml_orders_them(loaded, tmp_path: Path) -> None:
    result, job = _checked(loaded, "local")
    root = Path(result.plan.env["CONVEYOR_ARTIFACT_ROOT"])
    # the gate: an if_else on the decider's boolean control output, which its command emits and publishes
    conditions = {n: j for n, j in job["jobs"].items() if j["type"] == "if_else"}
    assert conditions == {"if_cond_0": {"type": "if_else", "condition": "total.cond_0", "true_block": ["publish"],
                                        "false_block": []}}
    assert job["jobs"]["total"]["component_outputs"]["cond_0"] == {"type": "boolean", "is_control": True}
    assert job["jobs"]["total"]["command"].endswith(f"&& {sys.executable} -m conveyor.export.azureml publish "
                                                       f"{EMIT_FILE}")
    # submitted with inputs set (a string the shell must not touch, a boolean as Azure ML writes it)
    label = 'say "hi" & $HOME `id`'
    state = run_like_azure_ml(job, {"label": label, "verbose": False}, tmp_path, "azml-run-7")
    run = json.loads((root / "runs" / "azml-run-7" / "run.json").read_text())
    assert run["parameters"] == {"n": 3, "scale": 1.5, "threshold": 5.0, "label": label, "verbose": False}
    assert state == {"make_shards": "ran", "score": "ran", "total": "ran", "publish": "ran", "report": "ran"}
    steps = {p.stem: json.loads(p.read_text()) for p in (root / "runs" / "azml-run-7" / "steps").glob("*.json")}
    assert {s["name"] for s in steps.values() if s["status"] == "succeeded"} >= {"make_shards", "total", "publish",
                                                                                "report"}
    # a second submission resuming the first, with the threshold set higher: Azure ML skips publish
    again = run_like_azure_ml(job, {"threshold": 100.0, "label": label, "verbose": False,
                                    RESUME_PARAM: "azml-run-7"}, tmp_path, "azml-run-8")
    assert again["publish"] == "skipped" and again["report"] == "ran"
    second = {p.stem: json.loads(p.read_text()) for p in (root / "runs" / "azml-run-8" / "steps").glob("*.json")}
    # every step that finished is reused from the resumed run; the decider records what its condition skips
    for name in ("make_shards", "total", "report"):
        assert second[name]["reason"] == "resumed from run azml-run-7", second[name]
    assert second["publish"]["status"] == "skipped"


@pytest.mark.slow
def test_what_azure_ml_would_refuse_fails_the_validation(loaded) -> None:
    # the SDK's schema refuses a type it does not know
    _, job = loaded["tampered"]
    assert "Value 'int' passed is not in set" in job["error"], job
    # the SDK loads a gate on the wrong node, and the check against the plan refuses it
    result, rebound = loaded["rebound"]
    assert "error" not in rebound
    with pytest.raises(AssertionError, match="if_cond_0"):
        check(rebound, result.plan)


# --- inside a task: the publisher of control outputs -------------------------------------------------

def test_the_publisher_has_nothing_to_publish_without_booleans_and_refuses_bad_usage(tmp_path: Path) -> None:
    emitted = tmp_path / "emit.json"
    emitted.write_text(json.dumps({"fanout_score": [0, 1, 2]}))
    cmd = [sys.executable, "-m", "conveyor.export.azureml"]
    done = subprocess.run([*cmd, "publish", str(emitted)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "control outputs: {}" in done.stdout, done.stderr
    wrong = subprocess.run([*cmd, "push", str(emitted)], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "usage" in wrong.stderr


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="needs an environment without mlflow")
def test_the_publisher_fails_the_task_when_the_image_lacks_mlflow(tmp_path: Path) -> None:
    emitted = tmp_path / "emit.json"
    emitted.write_text(json.dumps({"cond_0": True}))
    done = subprocess.run([sys.executable, "-m", "conveyor.export.azureml", "publish", str(emitted)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "needs mlflow and azureml-mlflow in the image" in done.stderr, done.stderr
