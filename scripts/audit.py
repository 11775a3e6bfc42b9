"""Audit the locked dependencies: fail on a known vulnerability that has a fix, skip clearly when offline.

Run by ``make audit`` (and so by ``make test`` in CI). ``requirements.lock`` holds the pinned versions
of the dev install; regenerate it with ``make lock`` after changing pyproject.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
SERVICE = "https://pypi.org/pypi/pip/json"     # pip-audit's default vulnerability source is PyPI's JSON API


def reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:   # noqa: S310 - a fixed https URL
            resp.read(1)
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def main() -> int:
    if not LOCK.exists():
        print(f"audit: {LOCK.name} is missing; create it with `make lock`.", file=sys.stderr)
        return 2
    why = reachable(SERVICE)
    if why is not None:
        print(f"audit: SKIPPED - the vulnerability service (PyPI) cannot be reached from this machine ({why}). "
              "The locked dependencies were NOT audited.")
        return 0
    proc = subprocess.run([sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--no-deps", "--disable-pip",
                           "--progress-spinner", "off", "-f", "json"], capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(f"audit: pip-audit gave no report (exit {proc.returncode}):\n{proc.stderr.strip()}", file=sys.stderr)
        if "ConnectionError" in proc.stderr or "Max retries" in proc.stderr:
            print("audit: SKIPPED - the vulnerability service stopped answering mid-audit.")
            return 0
        return 2
    fixable, unfixable = [], []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            line = f"{dep['name']} {dep['version']}: {vuln['id']}"
            if vuln.get("fix_versions"):
                fixable.append(f"{line} (fixed in {', '.join(vuln['fix_versions'])})")
            else:
                unfixable.append(f"{line} (no fix released yet)")
    audited = len(report.get("dependencies", []))
    for line in unfixable:
        print(f"audit: warning: {line}")
    if fixable:
        print(f"audit: FAILED - {len(fixable)} known vulnerabilities with a fix in {LOCK.name}:")
        for line in fixable:
            print(f"  {line}")
        print("Raise the pins (pyproject.toml), reinstall with `make dev`, then `make lock`.")
        return 1
    print(f"audit: ok - {audited} locked packages, no known vulnerability with a fix available.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
