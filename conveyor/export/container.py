"""Container images: a Dockerfile and its build context, for the serving image and any other.

``render_dockerfile`` and ``write_image_context`` know nothing of models: they take the files to
copy, the pinned requirements and the entry point, so the pipeline image can be written with them
too. ``build_serving_context`` fills them in for one model bundle: the bundle, Conveyor's own source,
pins from the environment the model was trained in, and ``conveyor serve-container`` as ENTRYPOINT.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor
from conveyor.errors import ConfigurationError

APP_DIR = "/opt/conveyor"
SOURCE_DIR = f"{APP_DIR}/src"          # Conveyor's own package, copied from this installation
MODEL_DIR = f"{APP_DIR}/model"         # the bundle the image serves where the platform names none
SERVE_ENTRYPOINT = ("python", "-m", "conveyor.cli.main", "serve-container")
# fsspec backends by URL scheme, installed so the image can read a model from that store
STORE_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What an image holds and runs; ``files`` maps a path in the build context to a path in the image."""

    base_image: str
    entrypoint: tuple[str, ...]
    requirements: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cmd: tuple[str, ...] = ()
    expose: tuple[int, ...] = ()
    workdir: str = APP_DIR
    user: str | None = "1000:1000"
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    comment: str = ""


def _env_value(value: str) -> str:
    return json.dumps(value)   # a double-quoted string with escapes, which ENV accepts


def render_dockerfile(spec: ImageSpec) -> str:
    """The Dockerfile text of ``spec``: dependencies first (a cached layer), then code, then the entry point."""
    if not spec.entrypoint:
        raise ConfigurationError("An image needs an entry point (ImageSpec.entrypoint).")
    lines = [f"# {line}".rstrip() for line in spec.comment.splitlines()] if spec.comment else []
    lines += [f"FROM {spec.base_image}",
              "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
              f"WORKDIR {spec.workdir}"]
    if spec.labels:
        lines.append("LABEL " + " ".join(f"{k}={_env_value(v)}" for k, v in spec.labels))
    if spec.requirements:
        lines += [f"COPY requirements.txt {spec.workdir}/requirements.txt",
                  f"RUN pip install --no-cache-dir -r {spec.workdir}/requirements.txt"]
    for source, target in spec.files:
        lines.append(f"COPY {source} {target}")
    if spec.env:
        lines.append("ENV " + " ".join(f"{k}={_env_value(v)}" for k, v in spec.env))
    if spec.user:
        uid, _, gid = spec.user.partition(":")
        lines.append(f"RUN groupadd --system --gid {gid or uid} conveyor && useradd --system --uid {uid} "
                     f"--gid {gid or uid} --home-dir /tmp conveyor")
        lines.append(f"USER {spec.user}")
    for port in spec.expose:
        lines.append(f"EXPOSE {port}")
    lines.append(f"ENTRYPOINT {json.dumps(list(spec.entrypoint))}")
    if spec.cmd:
        lines.append(f"CMD {json.dumps(list(spec.cmd))}")
    return "\n".join(lines) + "\n"


def write_image_context(out_dir: str | Path, spec: ImageSpec, sources: Mapping[str, Path]) -> Path:
    """Write ``Dockerfile``, ``requirements.txt`` and every ``sources`` entry (context path -> file or folder).

    Every COPY of ``spec`` must name a path ``sources`` provides: a context that cannot build is refused here.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    provided = [rel.strip("/") for rel in sources]
    missing = [src for src, _ in spec.files
               if not any(p == src.strip("/") or p.startswith(src.strip("/") + "/") for p in provided)]
    if missing:
        raise ConfigurationError(f"The image copies {', '.join(missing)}, which the build context does not provide.")
    for rel, origin in sources.items():
        target = out / rel
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)
    if spec.requirements:
        (out / "requirements.txt").write_text("\n".join(spec.requirements) + "\n")
    (out / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    (out / "Dockerfile").write_text(render_dockerfile(spec))
    return out


def pinned(packages: Mapping[str, str]) -> tuple[str, ...]:
    """``name==version`` lines, sorted."""
    return tuple(f"{name}=={version}" for name, version in sorted(packages.items()))


def store_packages(schemes: Iterable[str]) -> dict[str, str]:
    """The fsspec backends for ``schemes`` at this environment's versions (those not installed are skipped)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for scheme in schemes:
        dist = STORE_PACKAGES.get(scheme)
        if dist and dist not in out:
            try:
                out[dist] = version(dist)
            except PackageNotFoundError:
                continue
    return out


def base_image_for(python: str | None) -> str:
    """``python:X.Y-slim`` for the Python the model was trained with (this one's when unknown)."""
    import sys

    parts = (python or "").split(".")
    major_minor = ".".join(parts[:2]) if len(parts) >= 2 else f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"python:{major_minor}-slim"


@dataclass(frozen=True, slots=True)
class ServingImage:
    """A written build context for the serving image."""

    context: Path
    image: str
    manifest: dict[str, Any]
    spec: ImageSpec


def serving_spec(manifest: Mapping[str, Any], *, base_image: str | None = None,
                 stores: Sequence[str] = ("gs",), port: int = 8080) -> ImageSpec:
    """The serving image of one bundle: its pins, Conveyor's source, the bundle, ``serve-container``."""
    packages = dict((manifest.get("environment") or {}).get("packages") or {})
    packages.update({k: v for k, v in store_packages(stores).items() if k not in packages})
    model = manifest["model"]
    return ImageSpec(
        base_image=base_image or base_image_for((manifest.get("environment") or {}).get("python")),
        entrypoint=SERVE_ENTRYPOINT,
        requirements=pinned(packages),
        files=(("src/", f"{SOURCE_DIR}/"), ("model/", f"{MODEL_DIR}/")),
        env=(("PYTHONPATH", SOURCE_DIR), ("CONVEYOR_MODEL_URI", MODEL_DIR), ("CONVEYOR_HOME", "/tmp/conveyor")),
        expose=(port,),
        labels=(("org.opencontainers.image.title", f"{model['name']}:{model['version']}"),
                ("ai.conveyor.model", f"{model['name']}:{model['version']}"),
                ("ai.conveyor.content-hash", manifest["artifact"]["content_hash"])),
        comment=(f"Serves {model['name']}:{model['version']} ({manifest['artifact']['content_hash']}) on SageMaker, "
                 "Vertex AI, Azure ML and Kubernetes.\nWritten by `conveyor build-image`; write it again rather "
                 "than edit it."))


def build_serving_context(client: Any, ref: str, out_dir: str | Path, image: str, *,
                          base_image: str | None = None, stores: Sequence[str] = ("gs",)) -> ServingImage:
    """Export ``ref`` into ``out_dir/model`` and write the serving image's Dockerfile and context around it."""
    from conveyor.serving.bundle import export_bundle

    out = Path(out_dir)
    staging = out / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    manifest = export_bundle(client, ref, str(staging / "model"))
    spec = serving_spec(manifest, base_image=base_image, stores=stores)
    sources = {"src/conveyor": Path(conveyor.__file__).resolve().parent, "model": staging / "model"}
    write_image_context(out, spec, sources)
    shutil.rmtree(staging)
    return ServingImage(out, image, manifest, spec)

