"""Virtualenvs for the targets' own SDKs, whose pins fight ours (kfp, Airflow, SageMaker, Azure ML, hera).

Each lives under ``.cache/venvs/<name>/`` in the repository, is made once and reused: a marker
written after the last install tells a finished venv from a half-made one, which is made again.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".cache" / "venvs"


def target_venv(name: str, requirements: Sequence[str], *, conveyor: bool = False, timeout: float = 1500) -> Path:
    """The venv ``name`` with ``requirements`` installed (and this checkout of Conveyor, ``conveyor=True``).

    Returns the venv's folder; its interpreter is ``<folder>/bin/python``. Concurrent callers wait
    for one another (a file lock), so a session's parallel workers make it once.
    """
    wanted = hashlib.sha256("\n".join([*requirements, f"conveyor={conveyor}"]).encode()).hexdigest()[:12]
    folder = VENVS / f"{name}-{wanted}"
    marker = folder / ".complete"
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return folder
        if folder.exists():
            shutil.rmtree(folder)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run([*pip, *requirements], timeout)
        if conveyor:
            _run([*pip, "--no-deps", "-e", str(ROOT)], timeout)
        marker.write_text("\n".join(requirements) + "\n")
    return folder


def _run(cmd: list[str], timeout: float) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")


def run_in(venv: Path, args: Sequence[str], *, timeout: float = 600, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``venv``'s interpreter with ``args``; the caller asserts on the result (output kept for messages)."""
    return subprocess.run([str(venv / "bin" / "python"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)
