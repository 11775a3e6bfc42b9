"""npm packages the tests run (Azurite, asl-validator, Argo's schema), installed once under ``.cache``.

A marker written after ``npm install`` finished tells a whole install from a half-made one (made
again); a file lock makes parallel sessions install once.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path


def npm_package(prefix: Path, package: str, *, timeout: float = 600) -> Path:
    """``prefix`` with ``package`` (``name@version``) installed under ``prefix/node_modules``."""
    marker = prefix / ".complete"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == package:
            return prefix
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"{package} needs Node.js and npm; run scripts/system-packages.sh (make test does).")
        done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                               package], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"npm install {package} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        marker.write_text(package + "\n")
    return prefix
