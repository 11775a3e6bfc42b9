"""Audit the locked dependencies: fail on a known vulnerability that has a fix, skip clearly when the
vulnerability service cannot answer.

Run by ``make audit`` (and so by ``make test`` in CI). ``requirements.lock`` holds the pinned versions
of the dev install; regenerate it with ``make lock`` after changing pyproject.toml. pip-audit asks
PyPI's JSON API first and OSV second; a package neither can look up is reported as not audited,
never as clean.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
SERVICES = ("pypi", "osv")


def run_pip_audit(lock: Path, service: str) -> tuple[dict[str, Any] | None, str]:
    """pip-audit's JSON report over ``lock`` from ``service`` (None when it gave none) and its stderr."""
    proc = subprocess.run([sys.executable, "-m", "pip_audit", "-r", str(lock), "--no-deps", "--disable-pip",
                           "--progress-spinner", "off", "-s", service, "-f", "json"],
                          capture_output=True, text=True, timeout=1800)
    try:
        return json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return None, proc.stderr.strip() or f"exit {proc.returncode}, no output"


def verdict(report: dict[str, Any], service: str) -> tuple[int | None, list[str]]:
    """(exit code, lines to print) for one report; None as the code means "nothing could be audited"."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    lines: list[str] = []
    if deps and not audited:
        first = skipped[0]["skip_reason"]
        return None, [f"{service} could not audit any of the {len(deps)} locked packages ({first})"]
    for d in skipped:
        lines.append(f"audit: warning: {d['name']} was not audited: {d['skip_reason']}")
    fixable: list[str] = []
    for dep in audited:
        for vuln in dep.get("vulns", []):
            line = f"{dep['name']} {dep['version']}: {vuln['id']}"
            if vuln.get("fix_versions"):
                fixable.append(f"{line} (fixed in {', '.join(vuln['fix_versions'])})")
            else:
                lines.append(f"audit: warning: {line} (no fix released yet)")
    if fixable:
        lines.append(f"audit: FAILED - {len(fixable)} known vulnerabilities with a fix available ({service}):")
        lines += [f"  {f}" for f in fixable]
        lines.append("Raise the pins in pyproject.toml, reinstall with `make dev`, then `make lock`.")
        return 1, lines
    lines.append(f"audit: ok - {len(audited)} locked packages audited with {service}, no known vulnerability "
                 "with a fix available.")
    return 0, lines


def main() -> int:
    if not LOCK.exists():
        print(f"audit: {LOCK.name} is missing; create it with `make lock`.", file=sys.stderr)
        return 2
    reasons: list[str] = []
    for service in SERVICES:
        report, err = run_pip_audit(LOCK, service)
        if report is None:
            reasons.append(f"{service}: {err.splitlines()[-1] if err else 'no answer'}")
            continue
        code, lines = verdict(report, service)
        if code is None:
            reasons.extend(lines)
            continue
        print("\n".join(lines))
        return code
    print("audit: SKIPPED - no vulnerability service could audit the locked dependencies from this machine; "
          "they were NOT checked:")
    for r in reasons:
        print(f"  {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
