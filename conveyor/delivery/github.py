"""A GitHub Actions workflow for a model's life: test, train, register, gate, approve, deploy, watch.

``conveyor init --ci github`` writes ``.github/workflows/conveyor.yml``:

- ``test``      on every push and pull request: install the project, run its tests;
- ``train``     on a push to the default branch (or by hand): run the training pipeline, find the
                model version that run registered, and gate it on its evaluation metrics;
- ``approve``   in the ``model-approval`` environment (give it required reviewers, and the
                approval waits for one of them): approve that version in the registry;
- ``deploy``    in the ``production`` environment: move the alias (``production``) to it;
- ``drift``     on a schedule: a drift report of the endpoint's traffic, kept as an artefact,
                failing the job when the data drifted.

Every job talks to the same stores through ``CONVEYOR_METADATA_URL`` (a repository secret:
a PostgreSQL URL with its password) and ``CONVEYOR_ARTIFACT_ROOT`` (a repository secret too: an
``s3://``, ``gs://`` or ``az://`` root); the cloud's credentials are the user's to add.
Values the user gives are quoted for YAML and for the shell, never pasted into a script.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.export.yaml_text import to_yaml

WORKFLOW_PATH = Path(".github/workflows/conveyor.yml")
CHECKOUT = "actions/checkout@v4"
SETUP_PYTHON = "actions/setup-python@v5"
UPLOAD = "actions/upload-artifact@v4"


@dataclass(frozen=True)
class WorkflowSpec:
    """What the workflow runs; every field has a default but the pipeline and the model."""

    pipeline: str                               # FILE.py:PIPELINE that trains and registers the model
    model: str                                  # the registered model's name
    minimums: dict[str, float] = field(default_factory=dict)
    maximums: dict[str, float] = field(default_factory=dict)
    endpoint: str | None = None                 # the serving endpoint the drift check reads
    alias: str = "production"
    branch: str = "main"
    python: str = "3.11"
    install: str = "pip install -e ."
    test: str = "python -m pytest -q"
    drift_cron: str = "17 6 * * *"              # daily, off the hour (GitHub's busiest minute)
    parameters: dict[str, str] = field(default_factory=dict)


def _setup(spec: WorkflowSpec) -> list[dict[str, Any]]:
    return [{"uses": CHECKOUT},
            {"uses": SETUP_PYTHON, "with": {"python-version": spec.python, "cache": "pip"}},
            {"name": "Install", "run": spec.install}]


def _train_script(spec: WorkflowSpec) -> str:
    params = "".join(f" -p {shlex.quote(f'{k}={v}')}" for k, v in spec.parameters.items())
    model = shlex.quote(spec.model)
    return "\n".join([
        f"conveyor run {shlex.quote(spec.pipeline)}{params} --json > run.json",
        'run_id=$(python -c \'import json; print(json.load(open("run.json"))["id"])\')',
        f"version=$(conveyor models show {model} --run \"$run_id\" --json | python -c '"
        "import json, sys; found = [v[\"version\"] for v in json.load(sys.stdin)]; "
        "sys.exit(\"the training run registered no version of the model\") if not found else print(max(found))')",
        'echo "run_id=$run_id" >> "$GITHUB_OUTPUT"',
        'echo "version=$version" >> "$GITHUB_OUTPUT"',
        f'echo "Run $run_id registered {spec.model}:$version" >> "$GITHUB_STEP_SUMMARY"',
    ])


def _gate_script(spec: WorkflowSpec) -> str:
    bounds = [f"--min {shlex.quote(f'{k}={v}')}" for k, v in spec.minimums.items()]
    bounds += [f"--max {shlex.quote(f'{k}={v}')}" for k, v in spec.maximums.items()]
    return f'conveyor models gate {shlex.quote(spec.model)}:"$VERSION" {" ".join(bounds)}'


def workflow(spec: WorkflowSpec) -> dict[str, Any]:
    """The workflow as data (what ``render`` writes)."""
    if not spec.minimums and not spec.maximums:
        raise ConfigurationError("The workflow's gate needs at least one bound on the evaluation metrics: "
                                 "--min METRIC=NUMBER or --max METRIC=NUMBER (for example --min accuracy=0.8).")
    version = "${{ needs.train.outputs.version }}"
    on_main = f"github.event_name == 'workflow_dispatch' || (github.event_name == 'push' && github.ref == 'refs/heads/{spec.branch}')"
    jobs: dict[str, Any] = {
        "test": {
            "if": "github.event_name != 'schedule'",
            "runs-on": "ubuntu-latest",
            "steps": [*_setup(spec), {"name": "Tests", "run": spec.test}],
        },
        "train": {
            "needs": "test",
            "if": on_main,
            "runs-on": "ubuntu-latest",
            "outputs": {"run_id": "${{ steps.train.outputs.run_id }}", "version": "${{ steps.train.outputs.version }}"},
            "steps": [*_setup(spec),
                      {"name": "Train and register", "id": "train", "run": _train_script(spec)},
                      {"name": "Gate on the evaluation metrics", "env": {"VERSION": "${{ steps.train.outputs.version }}"},
                       "run": _gate_script(spec)},
                      {"name": "Keep the run's summary", "if": "always()", "uses": UPLOAD,
                       "with": {"name": "training-run", "path": "run.json", "if-no-files-found": "ignore"}}],
        },
        "approve": {
            "needs": "train",
            "runs-on": "ubuntu-latest",
            "environment": "model-approval",
            "env": {"CONVEYOR_ACTOR": "github-approval"},
            "steps": [*_setup(spec),
                      {"name": "Approve in the registry", "env": {"VERSION": version},
                       "run": f'conveyor models approve {shlex.quote(spec.model)}:"$VERSION" '
                              '-m "Approved in GitHub Actions run $GITHUB_RUN_ID by the model-approval reviewers"'}],
        },
        "deploy": {
            "needs": ["train", "approve"],
            "runs-on": "ubuntu-latest",
            "environment": spec.alias,
            "steps": [*_setup(spec),
                      {"name": f"Point {spec.alias} at the approved version", "env": {"VERSION": version},
                       "run": f'conveyor models alias {shlex.quote(spec.model)}:"$VERSION" {shlex.quote(spec.alias)}'}],
        },
    }
    triggers: dict[str, Any] = {"push": {"branches": [spec.branch]}, "pull_request": None, "workflow_dispatch": None}
    if spec.endpoint:
        triggers["schedule"] = [{"cron": spec.drift_cron}]
        endpoint = shlex.quote(spec.endpoint)
        jobs["drift"] = {
            "if": "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'",
            "runs-on": "ubuntu-latest",
            "steps": [*_setup(spec),
                      {"name": "Drift report of the last day's traffic",
                       "run": f"conveyor monitor report {endpoint} --window 24h -o drift.html --json > drift.json"},
                      {"name": "Keep the report", "if": "always()", "uses": UPLOAD,
                       "with": {"name": "drift-report", "path": "drift.html\ndrift.json", "if-no-files-found": "ignore"}},
                      {"name": "Fail on drift",
                       "run": "python -c 'import json, sys; r = json.load(open(\"drift.json\")); "
                              "sys.exit(\"the data drifted: see the drift-report artefact\") if r[\"dataset_drift\"] "
                              "else print(\"no drift\")'"}],
        }
    return {
        "name": f"Model {spec.model}",
        "on": triggers,
        "permissions": {"contents": "read"},
        "concurrency": {"group": "conveyor-${{ github.workflow }}-${{ github.ref }}", "cancel-in-progress": False},
        "env": {"CONVEYOR_METADATA_URL": "${{ secrets.CONVEYOR_METADATA_URL }}",
                "CONVEYOR_ARTIFACT_ROOT": "${{ secrets.CONVEYOR_ARTIFACT_ROOT }}",
                "CONVEYOR_ACTOR": "github-actions"},
        "jobs": jobs,
    }


HEADER = """\
# The life of model {model}, written by `conveyor init --ci github`. Edit it as your own.
#
# Before the first run, in the repository's settings:
#   secrets.CONVEYOR_METADATA_URL   the shared metadata database (postgresql+psycopg://user:password@host/db)
#   secrets.CONVEYOR_ARTIFACT_ROOT     the shared artifact root (s3://..., gs://..., az://...)
#   the cloud's credentials for that root (for example AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as
#   secrets, added to the env below), or OpenID Connect with the cloud's login action
#   environments "model-approval" (with required reviewers) and "{alias}"
#   the approver role for the approving actor, once: conveyor models grant github-approval --role approver
"""


def render(spec: WorkflowSpec) -> str:
    """The workflow file's text."""
    return HEADER.format(model=spec.model, alias=spec.alias) + to_yaml(workflow(spec))


def write(spec: WorkflowSpec, project: Path, *, force: bool = False) -> Path:
    """Write the workflow under ``project``; an existing one is kept unless ``force``."""
    path = project / WORKFLOW_PATH
    if path.exists() and not force:
        raise ConfigurationError(f"{path} already exists. Pass --force to replace it, or edit it.")
    text = render(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


_PIPELINE = re.compile(r"^@(?:cv\.|conveyor\.)?pipeline\b.*\n(?:@.*\n)*def\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
_REGISTER = re.compile(r"register_model\(\s*['\"]([A-Za-z0-9][A-Za-z0-9_.-]*)['\"]")


def guess(project: Path) -> tuple[list[str], list[str]]:
    """(pipelines, model names) found in the project's top-level Python files, for defaults."""
    pipelines: list[str] = []
    models: list[str] = []
    for path in sorted(project.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        pipelines += [f"{path.name}:{name}" for name in _PIPELINE.findall(text)]
        models += [m for m in _REGISTER.findall(text) if m not in models]
    return pipelines, models


def install_command(project: Path) -> str:
    """How the workflow installs the project: its requirements file, else the project itself."""
    if (project / "requirements.txt").exists():
        return "pip install -r requirements.txt"
    if (project / "pyproject.toml").exists() or (project / "setup.py").exists():
        return "pip install -e ."
    return "pip install conveyor"
