"""The Argo export: what each construct becomes, what is refused, and hera's models accepting the result."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
import yaml

import conveyor as cv
from conveyor.errors import ExportError
from conveyor.export import ExportOptions, export
from conveyor.export.argo import ArgoTarget, dns_name, task_names, to_yaml
from conveyor.export.plan import Emit, Plan, lower
from conveyor.runtime.loader import load_pipeline
from tests.export.validate_argo import check_file, check_files, schema_errors

HERE = Path(__file__).resolve().parent
BRANCHY = f"{HERE / 'pipelines' / 'branchy.py'}:branchy"


def _plan(pipeline, params=None, **kw) -> Plan:
    return lower(pipeline, params or {}, ref="p.py:x", project_dir="/p", image="reg/img:1", **kw)


def _compile(plan: Plan, **options: str) -> dict:
    files = ArgoTarget().compile(plan, ExportOptions(options))
    (text,) = files.values()
    return yaml.safe_load(text)


def _written(plan: Plan, tmp_path: Path, **options: str) -> Path:
    files = ArgoTarget().compile(plan, ExportOptions(options))
    (name, text), = files.items()
    path = tmp_path / name
    path.write_text(text)
    return path


def _dag(doc: dict) -> dict[str, dict]:
    entry = next(t for t in doc["spec"]["templates"] if t["name"] == doc["spec"]["entrypoint"])
    return {t["name"]: t for t in entry["dag"]["tasks"]}


def _templates(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


# --- gates: every task under a gate carries its when; a skipped upstream omits what follows -------

@cv.step
def measure(x: int) -> dict:
    return {"auc": x / 10, "big": x > 5}


@cv.step
def train(m: dict) -> str:
    return "model"


@cv.step
def deploy(model: str) -> str:
    return model


@cv.step
def announce(m: dict, where: str) -> str:
    return where


@cv.pipeline
def nested(x: int = 7):
    m = measure(x)
    with cv.when(m["auc"] >= 0.5):
        model = train(m)
        with cv.when(m["big"]):
            announce(m, "inner")
        deploy(model)          # under the outer gate only


@pytest.mark.slow   # runs hera in its venv
def test_a_gated_task_carries_the_when_of_every_gate_it_is_under(tmp_path: Path) -> None:
    plan = _plan(nested)
    doc = _compile(plan)
    dag = _dag(doc)
    outer = "{{tasks.measure.outputs.parameters.cond_0}} == true"
    inner = "{{tasks.measure.outputs.parameters.cond_1}} == true"
    assert dag["train"]["when"] == outer
    assert dag["announce"]["when"] == f"{outer} && {inner}"
    # deploy reads train's output: it inherits train's gate, and waits for train to have *succeeded*
    assert dag["deploy"]["when"] == outer
    assert dag["deploy"]["depends"] == "measure.Succeeded && train.Succeeded"   # its condition reads measure
    assert "when" not in dag["measure"]
    assert all("dependencies" not in t for t in dag.values())
    measure_outputs = _templates(doc)["measure"]["outputs"]["parameters"]
    assert measure_outputs == [{"name": "cond_0", "valueFrom": {"path": "/tmp/conveyor/emit/cond_0"}},
                               {"name": "cond_1", "valueFrom": {"path": "/tmp/conveyor/emit/cond_1"}}]
    args = _templates(doc)["measure"]["container"]["args"]
    assert args[args.index("--emit-dir") + 1] == "/tmp/conveyor/emit"
    assert "--emit-dir" not in _templates(doc)["deploy"]["container"]["args"]   # emits nothing
    parsed = check_file(_written(plan, tmp_path))
    assert parsed["tasks"]["announce"]["gates"] == [["measure", "cond_0"], ["measure", "cond_1"]]


def test_a_join_accepts_a_skipped_fan_out_and_nothing_else_skipped() -> None:
    doc = _compile(lower(load_pipeline(BRANCHY), {}, ref="b.py:branchy", project_dir="/p", image="i"))
    dag = _dag(doc)
    # Argo skips (or succeeds, by version) a withParam over []: the join still runs, as locally
    assert dag["total"]["depends"] == "(score.Succeeded || score.Skipped)"
    assert dag["score"]["depends"] == "make-shards.Succeeded"
    assert dag["score"]["withParam"] == "{{tasks.make-shards.outputs.parameters.fanout_score}}"
    assert dag["score"]["arguments"] == {"parameters": [{"name": "map-index", "value": "{{item}}"}]}
    score = _templates(doc)["score"]
    assert score["inputs"] == {"parameters": [{"name": "map-index"}]}
    args = score["container"]["args"]
    assert args[args.index("--map-index") + 1] == "{{inputs.parameters.map-index}}"
    assert "--map-index" not in _templates(doc)["total"]["container"]["args"]


@cv.step
def square(v: int) -> int:
    return v * v


@cv.step
def add(vs: list[int]) -> int:
    return sum(vs)


@cv.pipeline
def static_fan():
    add(square.map(v=[1, 2, 3]))


@pytest.mark.slow   # runs hera in its venv
def test_a_list_known_at_export_is_with_items(tmp_path: Path) -> None:
    plan = _plan(static_fan)
    doc = _compile(plan)
    dag = _dag(doc)
    assert dag["square"]["withItems"] == [0, 1, 2] and "withParam" not in dag["square"]
    assert dag["add"]["depends"] == "(square.Succeeded || square.Skipped)"
    assert check_file(_written(plan, tmp_path))["tasks"]["square"]["loop"] == ["withItems", [0, 1, 2]]


@cv.step
def count(n: int) -> list[int]:
    return list(range(n))


@cv.pipeline
def chained(n: int = 3):
    add(square.map(v=square.map(v=count(n))))


def test_a_map_over_a_map_iterates_over_the_first_source() -> None:
    dag = _dag(_compile(_plan(chained)))
    assert dag["square"]["withParam"] == dag["square-2"]["withParam"] == \
        "{{tasks.count.outputs.parameters.fanout_square}}"
    assert dag["square-2"]["depends"] == "(square.Succeeded || square.Skipped)"
    assert dag["add"]["depends"] == "(square-2.Succeeded || square-2.Skipped)"


def test_a_fanned_out_task_that_emits_is_refused() -> None:
    plan = _plan(static_fan)
    tasks = dict(plan.tasks)
    tasks["square"] = dataclasses.replace(tasks["square"], emits=(Emit("cond_0", "boolean", "x"),))
    with pytest.raises(ExportError, match="Step 'square' is fanned out.*join step"):
        ArgoTarget().compile(dataclasses.replace(plan, tasks=tasks), ExportOptions({}))


# --- names --------------------------------------------------------------------------------------

@pytest.mark.slow   # runs hera in its venv
def test_names_become_dns_labels_and_a_clash_gets_a_digest_of_its_own_name(tmp_path: Path) -> None:
    plan = _plan(static_fan)
    base = plan.tasks["add"]
    long = "a_step_whose_name_is_much_longer_than_any_kubernetes_pod_name_allows"
    tasks = {n: dataclasses.replace(base, name=n, upstream=()) for n in ("train_2", "train-2", "Main", long)}
    clashing = dataclasses.replace(plan, tasks=tasks)
    names = task_names(clashing)
    assert names["train_2"] != names["train-2"]
    assert names["train_2"].startswith("train-2-") and names["train-2"].startswith("train-2-")
    assert names["Main"] == "main" and len(names[long]) <= 40
    assert task_names(clashing) == names                         # deterministic
    alone = dataclasses.replace(plan, tasks={"train_2": tasks["train_2"]})
    assert task_names(alone) == {"train_2": "train-2"}            # no clash, no digest
    doc = _compile(clashing)
    assert doc["spec"]["entrypoint"] == "main-dag"                # a step called main keeps its name
    parsed = check_file(_written(clashing, tmp_path))
    assert {t["node"] for t in parsed["tasks"].values()} == set(tasks)
    assert dns_name("score[0]") == "score-0" and dns_name("__x__") == "x" and dns_name("_2") == "t-2"
    assert dns_name("true") == "true-step" and dns_name("Not") == "not-step"   # words of Argo's depends language


def test_two_tasks_that_still_share_a_name_are_refused() -> None:
    plan = _plan(static_fan)
    base = plan.tasks["add"]
    # 'train-2-<digest of train_2>' is what train_2 becomes in a clash: a third task spelling it out collides
    digest_name = None
    probe = dataclasses.replace(plan, tasks={n: dataclasses.replace(base, name=n, upstream=())
                                             for n in ("train_2", "train-2")})
    digest_name = task_names(probe)["train_2"]
    tasks = {n: dataclasses.replace(base, name=n, upstream=()) for n in ("train_2", "train-2", digest_name)}
    with pytest.raises(ExportError, match="both become .*Rename one of the steps"):
        ArgoTarget().compile(dataclasses.replace(plan, tasks=tasks), ExportOptions({}))


# --- parameters and resume ----------------------------------------------------------------------

@cv.step
def fit(lr: float, depth: int, mode: str, warm: bool, grid: list) -> str:
    return f"{lr}{depth}{mode}{warm}{grid}"


@cv.pipeline
def typed(lr: float = 0.1, depth: int = 3, mode: Literal["fast", "full"] = "fast", warm: bool = False,
          grid: list = [1, 2]):   # noqa: B006 - a default the export turns into JSON text
    fit(lr, depth, mode, warm, grid)


@pytest.mark.slow   # runs hera in its venv
def test_parameters_are_typed_texts_with_defaults_and_choices(tmp_path: Path) -> None:
    plan = _plan(typed, {"depth": "5"})
    doc = _compile(plan)
    params = {p["name"]: p for p in doc["spec"]["arguments"]["parameters"]}
    assert [p["name"] for p in doc["spec"]["arguments"]["parameters"]] == [
        "lr", "depth", "mode", "warm", "grid", "conveyor_resume_from"]
    assert {n: p["value"] for n, p in params.items()} == {
        "lr": "0.1", "depth": "5", "mode": "fast", "warm": "false", "grid": "[1,2]", "conveyor_resume_from": ""}
    assert params["mode"]["enum"] == ["fast", "full"]
    assert params["depth"]["description"].startswith("integer") and params["grid"]["description"].startswith("json")
    assert all(isinstance(p["value"], str) for p in params.values())   # Argo's parameters are strings
    args = _templates(doc)["fit"]["container"]["args"]
    for name in ("lr", "depth", "mode", "warm", "grid"):
        assert f"{name}={{{{workflow.parameters.{name}}}}}" in args
    types = yaml.safe_load(doc["metadata"]["annotations"]["conveyor.dev/parameter-types"])
    assert types == {"lr": "number", "depth": "integer", "mode": "string", "warm": "boolean", "grid": "json"}
    parsed = check_file(_written(plan, tmp_path))
    assert next(p for p in parsed["parameters"] if p["name"] == "mode")["enum"] == ["fast", "full"]


def test_the_resume_parameter_reaches_every_task(tmp_path: Path) -> None:
    result = export(BRANCHY, "argo", image="i", out=tmp_path, artifact_root="s3://b/a", resume="run-0042",
                    project_dir=HERE.parents[1], build_context=False)
    doc = yaml.safe_load((tmp_path / "workflow.yaml").read_text())
    resume = doc["spec"]["arguments"]["parameters"][-1]
    assert resume["name"] == "conveyor_resume_from" and resume["value"] == "run-0042"
    for name, tmpl in _templates(doc).items():
        if "container" in tmpl:
            args = tmpl["container"]["args"]
            assert args[args.index("--resume-from") + 1] == "{{workflow.parameters.conveyor_resume_from}}", name
            assert args[args.index("--run-id") + 1] == "{{workflow.uid}}", name
            assert tmpl["container"]["env"] == [{"name": "CONVEYOR_ARTIFACT_ROOT", "value": "s3://b/a"}], name
    assert result.commands[-1] == f"argo submit {tmp_path / 'workflow.yaml'} --watch"


# --- resources, retries, deadlines --------------------------------------------------------------

@cv.step(retries=3, backoff=2, timeout=60, cpus=0.5, memory="2G", gpus=1)
def heavy(x: int) -> int:
    return x


@cv.step(cpus=4, memory="1.5GiB")
def light(x: int) -> int:
    return x


@cv.pipeline
def sized(x: int = 1):
    light(heavy(x))


@pytest.mark.slow   # runs hera in its venv
def test_resources_retries_and_deadlines_map_to_kubernetes_and_argo(tmp_path: Path) -> None:
    plan = _plan(sized, instance_types={"heavy": "p3.2xlarge", "*": "m5.large"})
    doc = _compile(plan)
    heavy_t, light_t = _templates(doc)["heavy"], _templates(doc)["light"]
    assert heavy_t["container"]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1953125Ki"},      # 2G = 2*10^9 bytes, exactly
        "limits": {"memory": "1953125Ki", "nvidia.com/gpu": "1"}}
    assert light_t["container"]["resources"] == {"requests": {"cpu": "4", "memory": "1536Mi"},
                                                 "limits": {"memory": "1536Mi"}}
    assert heavy_t["nodeSelector"] == {"node.kubernetes.io/instance-type": "p3.2xlarge"}
    assert light_t["nodeSelector"] == {"node.kubernetes.io/instance-type": "m5.large"}
    assert heavy_t["retryStrategy"] == {"limit": 3, "retryPolicy": "OnError",
                                        "backoff": {"duration": "2s", "factor": 2, "cap": "30s"}}
    assert heavy_t["activeDeadlineSeconds"] == plan.tasks["heavy"].deadline_s == 60 * 4 + 2 + 4 + 8 + 600
    assert "retryStrategy" not in light_t and "activeDeadlineSeconds" not in light_t
    parsed = check_file(_written(plan, tmp_path))
    assert parsed["tasks"]["heavy"]["retries"] == 3 and parsed["tasks"]["heavy"]["retry_policy"] == "OnError"


# --- kinds and options --------------------------------------------------------------------------

@pytest.mark.slow   # runs hera in its venv
def test_a_workflow_template_loads_into_heras_model(tmp_path: Path) -> None:
    result = export(BRANCHY, "argo", image="i", out=tmp_path, artifact_root="s3://b/a", project_dir=HERE.parents[1],
                    build_context=False, options={"kind": "WorkflowTemplate", "namespace": "ml",
                                                  "service_account": "runner", "run_id": "name",
                                                  "secrets": "conveyor-db, aws-creds"})
    path = tmp_path / "workflowtemplate.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "WorkflowTemplate"
    assert doc["metadata"]["name"] == "branchy" and doc["metadata"]["namespace"] == "ml"
    assert doc["spec"]["serviceAccountName"] == "runner"
    args = _templates(doc)["total"]["container"]["args"]
    assert args[args.index("--run-id") + 1] == "{{workflow.name}}"
    for tmpl in doc["spec"]["templates"][1:]:     # the password and credentials come from the Secrets
        assert tmpl["container"]["envFrom"] == [{"secretRef": {"name": "conveyor-db"}},
                                                {"secretRef": {"name": "aws-creds"}}]
    assert check_file(path)["kind"] == "WorkflowTemplate"
    assert result.commands[-2:] == [f"argo template create -n ml {path}",
                                    "argo submit -n ml --from workflowtemplate/branchy --watch"]


@pytest.mark.parametrize(("options", "match"), [({"kind": "CronWorkflow"}, "kind=Workflow"),
                                                ({"run_id": "pod"}, "run_id=uid"),
                                                ({"secrets": "Conveyor_DB"}, "secrets: 'Conveyor_DB' is not a Kube"),
                                                ({"namespace": "ML team"}, "namespace: 'ML team' is not a Kube"),
                                                ({"parallelism": "2"}, "has no option parallelism")])
def test_an_option_argo_export_does_not_know_is_refused(options: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=match):
        export(BRANCHY, "argo", image="i", out=tmp_path, artifact_root="s3://b/a", project_dir=HERE.parents[1],
               build_context=False, options=options)


def test_the_export_is_deterministic() -> None:
    plan = lower(load_pipeline(BRANCHY), {}, ref="b.py:branchy", project_dir="/p", image="i")
    assert ArgoTarget().compile(plan, ExportOptions({})) == ArgoTarget().compile(plan, ExportOptions({}))


TRICKY = ["yes", "No", "on", "y", "N", "null", "~", "", " lead", "trail ", "1.5", "010", "0x1F", "1e3", ".inf", "true",
          "a: b", "#x", "- x", "{{workflow.uid}}", "[1,2]", "@x", "*x", "&x", "!x", "%x", "`x", "'x'", '"x"', "a\nb",
          "tab\t", "é ünïcode", "back\\slash", "2026-12-02", "plain-name_1.2/x"]


def test_the_yaml_writer_keeps_every_value_as_it_is() -> None:
    data = {"strings": TRICKY, "numbers": [0, -3, 2.5, 1e-9, 3e20, float("inf")], "flags": [True, False], "none": None,
            "nested": [{"a": [], "b": {}, "c": [{"d": "x"}, [1, [2]]]}], "yes": {"on": "off"}}
    assert yaml.safe_load(to_yaml(data)) == data


# --- the validator itself fails on what Argo would not accept ------------------------------------

BROKEN = {
    "unknown-key": (lambda d: _templates(d)["score"]["retryStrategy"].update(limitt=2), "limitt: unknown to the model"),
    "misplaced-key": (lambda d: _templates(d)["score"]["container"].update(resource={"cpu": "1"}), "resource: unknown"),
    "wrong-type": (lambda d: _templates(d)["score"].update(retryStrategy=[1]), "ValidationError"),
    "missing-template": (lambda d: _dag(d)["total"].update(template="totl"), "template 'totl' does not exist"),
    "missing-task": (lambda d: _dag(d)["total"].update(depends="scor.Succeeded"), "names 'scor'"),
    "undeclared-output": (lambda d: _dag(d)["publish"].update(when="{{tasks.total.outputs.parameters.cond_9}} == true"),
                          "does not declare"),
    "not-an-ancestor": (lambda d: _dag(d)["publish"].update(when="{{tasks.report.outputs.parameters.cond_0}} == true"),
                        "does not wait for"),
    "plain-dependencies": (lambda d: _dag(d)["total"].update(depends=None, dependencies=["score"]),
                           "plain `dependencies`"),
    "cycle": (lambda d: _dag(d)["make-shards"].update(depends="report.Succeeded"), "cycle"),
    "bad-name": (lambda d: _dag(d)["report"].update(name="Report_1"), "not a DNS-1123 label"),
    "unknown-input": (lambda d: _templates(d)["total"]["container"]["args"].append("{{inputs.parameters.x}}"),
                      "is not an input"),
}


@pytest.mark.slow   # runs hera in its venv
def test_the_validator_rejects_what_argo_would_not_run(tmp_path: Path) -> None:
    plan = lower(load_pipeline(BRANCHY), {}, ref="b.py:branchy", project_dir="/p", image="i")
    paths = []
    for case, (edit, _) in BROKEN.items():
        doc = _compile(plan)
        edit(doc)
        paths.append(tmp_path / f"{case}.yaml")
        paths[-1].write_text(yaml.safe_dump(_drop_none(doc), sort_keys=False))
    paths.append(tmp_path / "intact.yaml")
    paths[-1].write_text(yaml.safe_dump(_compile(plan), sort_keys=False))
    *broken, intact = check_files(paths)
    for (case, (_, message)), found in zip(BROKEN.items(), broken):
        assert isinstance(found, str) and message in found, f"{case}: {found}"
    assert isinstance(intact, dict) and set(intact["tasks"]) == {"make-shards", "score", "total", "publish", "report"}


def test_argos_schema_accepts_the_export_and_rejects_wrong_types() -> None:
    plan = lower(load_pipeline(BRANCHY), {}, ref="b.py:branchy", project_dir="/p", image="i")
    intact = _compile(plan)
    wrong_type = _compile(plan)
    _templates(wrong_type)["score"]["retryStrategy"]["limit"] = [2]
    unnamed = _compile(plan)
    del _templates(unnamed)["total"]["container"]["name"]
    template = _compile(plan, kind="WorkflowTemplate", secrets="conveyor-db,aws-creds", service_account="runner")
    ok, bad_type, bad_name, ok_template = schema_errors([intact, wrong_type, unnamed, template])
    assert ok is None and ok_template is None
    assert bad_type and "retryStrategy/limit" in bad_type
    assert bad_name and "container must have required property name" in bad_name


def _drop_none(v):
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v
