"""Shipping the user's code to Ray workers: the step's package or folder as a Ray runtime environment.

A step whose module is importable on the workers already (Conveyor itself, anything installed
in site-packages) ships nothing. Otherwise the top-level package holding the step's module goes
as ``py_modules``, and a top-level module or a file loaded by path goes with its folder as
``working_dir``. Ray stores each package in the cluster under a hash of its content, so the same
code is uploaded once and every node unpacks it once; this process also remembers which package
a folder became, keyed by a cheap fingerprint of its files (names, sizes, modification times),
so an unchanged folder is not hashed again for every run.
"""

from __future__ import annotations

import functools
import hashlib
import os
import site
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.runtime.worker import FunctionRef

# never shipped: version control, virtualenvs, caches, Conveyor's own home
EXCLUDES = [".git", ".hg", ".venv", "venv", ".tox", ".nox", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache",
            ".pytest_cache", ".cache", "node_modules", ".conveyor"]
_SKIP_DIRS = {e for e in EXCLUDES if "*" not in e}

_lock = threading.Lock()
_uploaded: dict[tuple[str, str, str], str] = {}   # (field, folder, fingerprint) -> package URI in the cluster
_seen_at: dict[str, float] = {}   # package URI -> when this process last uploaded it or saw it in the cluster
# Ray keeps a package at least 10 minutes after it was last pinned, even unused; this process pins
# it at every upload or check, and does not ask the cluster again for this long after
TRUST_S = 60.0


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    roots.add(site.getusersitepackages())
    return (*(Path(r).resolve() for r in roots if r), Path(sys.prefix).resolve())


@functools.lru_cache(maxsize=1024)
def code_location(ref: FunctionRef | None) -> tuple[str, Path, str | None] | None:
    """What to ship for a step, or None: (field, folder, the step's file relative to the folder's parent or
    the working directory, when the worker loads it by path)."""
    if ref is None or not ref.source_file or ref.module.split(".")[0] == "conveyor":
        return None
    source = Path(ref.source_file).resolve()
    if any(source.is_relative_to(root) for root in _installed_roots()):
        return None
    parts = ref.module.split(".")
    if len(parts) > 1 and ref.module != "__main__":
        depth = len(parts) - (1 if source.name == "__init__.py" else 2)
        package = source.parents[depth]
        if package.name == parts[0]:
            return "py_modules", package, None
    # a file loaded by path (or run as __main__): inside a package, ship the whole package, so that the
    # file's own imports of it work; else its folder is the working directory
    top = source.parent
    while (top / "__init__.py").exists() and (top.parent / "__init__.py").exists():
        top = top.parent
    if (top / "__init__.py").exists():
        return "py_modules", top, str(source.relative_to(top.parent))
    return "working_dir", source.parent, source.name


def fingerprint(folder: Path) -> str:
    """A cheap fingerprint of a folder's files (relative names, sizes, modification times)."""
    digest = hashlib.sha256()
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            with_stat = os.stat(os.path.join(here, name))
            digest.update(f"{os.path.relpath(os.path.join(here, name), folder)}\0{with_stat.st_size}\0"
                          f"{with_stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _upload(field: str, folder: Path) -> str:
    """Upload the folder as a Ray package (unless the cluster has it) and return its URI."""
    # Ray's own upload path for job-level runtime environments: local paths are refused per task,
    # so the package is made here once and tasks name it by URI.
    from ray._private.runtime_env.packaging import package_exists, pin_runtime_env_uri
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    key = (field, str(folder), fingerprint(folder))
    with _lock:
        uri = _uploaded.get(key)
        if uri is not None and _still_there(uri, package_exists, pin_runtime_env_uri):
            return uri
        env: dict[str, Any] = {field: [str(folder)] if field == "py_modules" else str(folder), "excludes": EXCLUDES}
        scratch = tempfile.mkdtemp(prefix="conveyor-ray-pkg-")
        try:
            if field == "py_modules":
                env = upload_py_modules_if_needed(env, include_gitignore=True, scratch_dir=scratch)
                uri = env["py_modules"][0]
            else:
                env = upload_working_dir_if_needed(env, include_gitignore=True, scratch_dir=scratch)
                uri = env["working_dir"]
        except Exception as exc:
            raise ConfigurationError(f"Cannot send the code in {folder} to the Ray cluster: {exc}. Make the folder "
                                     "smaller (a .rayignore file excludes data), or install the package on the "
                                     "cluster's nodes.") from None
        finally:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
        _uploaded[key] = uri
        _seen_at[uri] = time.monotonic()
        return uri


def _still_there(uri: str, package_exists: Any, pin: Any) -> bool:
    """True when the cluster has the package: pinned by this process within TRUST_S, else asked (and pinned)."""
    if time.monotonic() - _seen_at.get(uri, float("-inf")) < TRUST_S:
        return True
    pin(uri)
    if not package_exists(uri):
        return False
    _seen_at[uri] = time.monotonic()
    return True


class CodePackages:
    """The runtime environments of one run: each folder is looked at once per run."""

    def __init__(self) -> None:
        self._envs: dict[tuple[str, str], str] = {}

    def runtime_env(self, ref: FunctionRef | None, extra: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """The runtime environment a step's task needs, and the step file's path relative to its working dir."""
        where = code_location(ref)
        env = dict(extra)
        relative = None
        if where is not None:
            field, folder, relative = where
            key = (field, str(folder))
            uri = self._envs.get(key)
            if uri is None:
                uri = self._envs[key] = _upload(field, folder)
            if field == "py_modules":
                env["py_modules"] = [*env.get("py_modules", []), uri]
            else:
                env["working_dir"] = uri
        return (env or None), relative
