"""The environment a run executes in: Python, platform, packages and the git commit."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


@functools.cache
def python_environment() -> dict[str, Any]:
    """Python, platform and installed distributions (computed once per process)."""
    from importlib.metadata import distributions

    packages = {}
    for dist in distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower()] = dist.version
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": dict(sorted(packages.items())),
    }


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
