from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder where test steps count their executions."""
    folder = tmp_path / "counts"
    monkeypatch.setenv("CVTEST_COUNTS", str(folder))
    return folder
