"""The environment a run executes in: Python, platform, packages and the git commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


@functools.cache
def python_environment() -> dict[str, Any]:
    """Python, platform and installed distributions (computed once per process)."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": dict(sorted(installed_distributions().items())),
    }


def installed_distributions() -> dict[str, str]:
    """name -> version of every distribution on ``sys.path``, the first found winning (as imports do).

    Read from the ``<name>-<version>.dist-info`` folder names, which the wheel specification
    makes exact, so no metadata file is parsed: parsing them all cost most of an exported task's
    start-up. Only ``.egg-info`` folders, whose names may lack the version, are read.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as folder:
                names = sorted(e.name for e in folder if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
        for name in names:
            stem, _, kind = name.rpartition(".")
            dist, sep, version = stem.partition("-")
            if kind == "egg-info":
                dist, version = _egg_info(os.path.join(entry or ".", name), dist)
            elif not sep:
                continue
            if dist and version:
                found.setdefault(dist.lower().replace("_", "-"), version)
    return found


def _egg_info(path: str, fallback: str) -> tuple[str, str]:
    from importlib.metadata import PathDistribution

    meta = PathDistribution(Path(path)).metadata
    return (meta.get("Name") or fallback), (meta.get("Version") or "")


def git_state(folder: str) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding ``folder``, or (None, None) outside one.

    Not cached: the dirty state changes while a process runs pipelines.
    """
    path = Path(folder)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
