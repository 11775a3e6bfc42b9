"""Start-up stays fast: heavy libraries load only when a command needs them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "pandas", "pyarrow", "sklearn", "numpy", "fastapi")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_conveyor_and_declaring_steps_loads_no_heavy_library() -> None:
    loaded = _modules_after("import conveyor as cv\n@cv.step\ndef f(x: int) -> int: return x\n"
                            "@cv.pipeline\ndef p(): f(1)\np.build()")
    assert not [m for m in HEAVY if m in loaded]


def test_cli_help_loads_no_heavy_library() -> None:
    loaded = _modules_after("import conveyor.cli.main")
    assert not [m for m in HEAVY if m in loaded]
