"""The dependency audit's verdict: a fixable vulnerability fails, a service that audits nothing is a skip
(never "clean"), unfixed ones only warn."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("audit_script", REPO / "scripts" / "audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)


def test_a_known_vulnerability_with_a_fix_fails_the_audit() -> None:
    report = {"dependencies": [
        {"name": "requests", "version": "2.0.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["2.31.0"]}]},
        {"name": "numpy", "version": "2.0.0", "vulns": [{"id": "GHSA-2", "fix_versions": []}]},
        {"name": "orjson", "version": "3.0.0", "vulns": []}]}
    code, lines = audit.verdict(report, "pypi")
    assert code == 1
    assert "  requests 2.0.0: PYSEC-1 (fixed in 2.31.0)" in lines
    assert "audit: warning: numpy 2.0.0: GHSA-2 (no fix released yet)" in lines


def test_unfixed_vulnerabilities_only_warn() -> None:
    code, lines = audit.verdict({"dependencies": [
        {"name": "numpy", "version": "2.0.0", "vulns": [{"id": "GHSA-2", "fix_versions": []}]}]}, "osv")
    assert code == 0 and lines[-1].startswith("audit: ok - 1 locked packages audited with osv")


def test_a_service_that_audits_nothing_is_not_reported_clean() -> None:
    code, lines = audit.verdict({"dependencies": [
        {"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.0.0)"}]},
        "pypi")
    assert code is None and "could not audit any of the 1 locked packages" in lines[0]


def test_the_lock_pins_every_dev_dependency() -> None:
    pins = dict(line.split("==", 1) for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line)
    for name in ("pip_audit", "pytest", "psycopg", "skops", "scikit-learn", "uvicorn", "sqlalchemy"):
        assert any(k.lower().replace("-", "_") == name.replace("-", "_") for k in pins), name
    assert not any(k.lower().startswith("conveyor") for k in pins)
    assert Path(REPO / "Makefile").read_text().count("$(MAKE) audit") == 1
