"""Exporting a pipeline: the target protocol, the registry of targets, and ``export()``.

A target is one module with one class: it compiles a :class:`~conveyor.export.plan.Plan` into the
files of the orchestrator's own definition and says which command submits them. Targets are
imported only when used, so ``import conveyor`` never pays for an orchestrator's SDK.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from conveyor.errors import ExportError
from conveyor.export.plan import Plan, lower

# name -> "module:Class"; adding a target is adding a module and a line here
TARGETS: dict[str, str] = {
    "kfp": "conveyor.export.kfp:KfpTarget",
    "vertex": "conveyor.export.kfp:VertexTarget",
    "sagemaker": "conveyor.export.sagemaker:SageMakerTarget",
    "azureml": "conveyor.export.azureml:AzureMLTarget",
    "airflow": "conveyor.export.airflow:AirflowTarget",
    "argo": "conveyor.export.argo:ArgoTarget",
    "stepfunctions": "conveyor.export.stepfunctions:StepFunctionsTarget",
}
IMAGE_PROJECT_DIR = "/opt/conveyor/project"
IMAGE_LIB_DIR = "/opt/conveyor/lib"
# never copied into an image's build context
SKIPPED = {".git", ".conveyor", ".venv", "venv", ".cache", "__pycache__", ".pytest_cache", ".mypy_cache",
           ".ruff_cache", "node_modules", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class ExportOptions:
    """What a user chose beyond the plan: target-specific ``options`` are ``--option key=value`` pairs."""

    options: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)


class Target(Protocol):
    """One orchestrator. ``compile`` does no I/O: it returns file names (relative) and their text."""

    name: ClassVar[str]
    extra: ClassVar[str]          # the pip extra with this target's SDK, for submitting (`conveyor[kfp]`)
    option_names: ClassVar[tuple[str, ...]]   # the --option keys it understands

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        """The definition's files, by relative path."""
        ...

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """The shell commands that build, push and submit what was written."""
        ...


def target(name: str) -> Target:
    """The target called ``name``; an unknown name lists the known ones."""
    where = TARGETS.get(name)
    if where is None:
        raise ExportError(f"Unknown export target {name!r}. Targets: {', '.join(TARGETS)}.")
    module, _, cls = where.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("conveyor"):
            raise ExportError(f"The {name} exporter is not part of this installation ({exc}).") from None
        raise ExportError(f"The {name} exporter needs {exc.name}: pip install 'conveyor[{name}]'.") from None


@dataclass(frozen=True)
class ExportResult:
    """What ``export()`` wrote and what to run next."""

    target: str
    plan: Plan
    files: list[Path]
    commands: list[str]


def export(pipeline: Any, target_name: str, *, image: str, out: str | os.PathLike[str],
           params: Mapping[str, Any] | None = None, from_text: bool = False, resume: str | None = None,
           artifact_root: str | None = None, metadata_url: str | None = None, allow_pickle: bool = False,
           options: Mapping[str, str] | None = None, instance_types: Mapping[str, str] | None = None,
           project_dir: str | os.PathLike[str] | None = None, workdir: str | None = None,
           python: str = "python", build_context: bool = True) -> ExportResult:
    """Compile ``pipeline`` (a Pipeline or a ``file.py:name`` reference) for ``target_name`` into ``out``.

    Tasks run ``python -m conveyor step exec`` in ``image``: ``workdir`` is where the project is at
    run time (the image's copy by default; the real folder for local runners), ``python`` the
    interpreter. ``artifact_root`` (default: the settings') and ``metadata_url`` (optional: without
    it each task writes its record beside its outputs) go into the tasks' environment; a database
    URL with a password is refused (give it to the tasks through the target's secrets instead).
    ``resume`` makes the exported run reuse every step that finished in that run.
    """
    from conveyor.config import load_settings
    from conveyor.runtime.loader import load_pipeline, pipeline_ref

    if isinstance(pipeline, str):
        pipeline = load_pipeline(pipeline)
    full_ref = pipeline_ref(pipeline)
    if full_ref is None:
        raise ExportError(f"Pipeline '{pipeline.name}' has no importable reference. Define it at the top level "
                          "of a file or module and export it as FILE.py:NAME.")
    project = Path(project_dir).resolve() if project_dir else _project_of(full_ref)
    ref = _relative_ref(full_ref, project)
    settings = load_settings()
    env = {"CONVEYOR_ARTIFACT_ROOT": artifact_root or settings.artifact_root}
    if metadata_url:
        if _has_password(metadata_url):
            raise ExportError("The metadata URL holds a password, which an exported definition must not contain. "
                              "Export without --metadata-url and set CONVEYOR_METADATA_URL in the tasks' environment "
                              "from the target's secrets (a Kubernetes Secret, Secrets Manager, Key Vault).")
        env["CONVEYOR_METADATA_URL"] = metadata_url
    if allow_pickle:
        env["CONVEYOR_ALLOW_PICKLE"] = "true"
    tgt = target(target_name)
    opts = ExportOptions(dict(options or {}))
    unknown = sorted(set(opts.options) - set(tgt.option_names))
    if unknown:
        raise ExportError(f"Target {target_name} has no option {', '.join(unknown)}. Its options: "
                          f"{', '.join(tgt.option_names) or '(none)'}.")
    plan = lower(pipeline, params, ref=ref, project_dir=workdir or IMAGE_PROJECT_DIR, image=image,
                 from_text=from_text, resume_from=resume or "", env=env, instance_types=instance_types,
                 python=python)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rel, text in tgt.compile(plan, opts).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    if build_context:
        written += write_build_context(out_dir / "image", project)
    return ExportResult(target_name, plan, written, tgt.next_commands(plan, written, opts))


def _project_of(ref: str) -> Path:
    target = ref.rpartition(":")[0]
    if target.endswith(".py"):
        return Path(target).resolve().parent
    return Path.cwd()


def _relative_ref(ref: str, project: Path) -> str:
    target, _, attr = ref.rpartition(":")
    if not target.endswith(".py"):
        return ref
    path = Path(target).resolve()
    try:
        return f"{path.relative_to(project).as_posix()}:{attr}"
    except ValueError:
        raise ExportError(f"The pipeline file {path} is outside the project folder {project}; tasks would not find "
                          "it in the image. Pass --project-dir with a folder that contains it.") from None


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return True


# --- the image's build context -------------------------------------------------------------------

def write_build_context(dest: Path, project: Path, *, base_image: str | None = None) -> list[Path]:
    """A Dockerfile, the pinned requirements, the project's code and Conveyor's own, under ``dest``.

    The pins are this environment's distributions (the environment runs are captured in), without
    Conveyor itself, which is copied as source so the image runs exactly this version. The image's
    entry point is ``python -m conveyor``: tasks run ``step exec``; a bare ``serve`` argument (how
    SageMaker starts a serving container) serves the platform's model as ``serve-container`` does.
    """
    import conveyor
    from conveyor.export.container import ImageSpec, write_image_context
    from conveyor.runtime.environment import python_environment

    env = python_environment()
    if dest.exists():
        shutil.rmtree(dest)
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix="conveyor-image-"))
    out_dir = dest.parent.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:   # never the export's own output inside the project
        return _ignore(folder, names) | {n for n in names if (Path(folder) / n).resolve() == out_dir}

    shutil.copytree(project, staging / "project", ignore=ignore)
    skip = {"conveyor", "pip", "setuptools", "wheel"}
    version = ".".join(env["python"].split(".")[:2])
    spec = ImageSpec(
        base_image=base_image or f"python:{version}-slim", entrypoint=("python", "-m", "conveyor"),
        requirements=tuple(f"{n}=={v}" for n, v in env["packages"].items() if n not in skip),
        files=(("lib", IMAGE_LIB_DIR), ("project", IMAGE_PROJECT_DIR)),
        env=(("PYTHONPATH", IMAGE_LIB_DIR), ("CONVEYOR_IMAGE", "1")), workdir=IMAGE_PROJECT_DIR,
        user=None,   # the platforms mount their input and output folders for root (SageMaker, Airflow's XCom)
        comment="The pipeline image: every task runs `python -m conveyor step exec ...` (conveyor export).")
    try:
        write_image_context(dest, spec, {"lib/conveyor": Path(conveyor.__file__).parent,
                                         "project": staging / "project"})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / "Dockerfile", dest / "requirements.txt", dest / ".dockerignore"]


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIPPED or n.endswith((".pyc", ".egg-info"))}


def build_commands(plan: Plan, out_dir: Path) -> list[str]:
    """The commands every target starts with: build and push the image."""
    return [f"docker build -t {plan.image} {out_dir / 'image'}", f"docker push {plan.image}"]
