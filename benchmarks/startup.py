"""Start-up cost: `conveyor --help` and `import conveyor` against bare `python -c pass`, and peers' imports.

Prints one JSON object per command: median wall time of 10 runs and the extra over bare Python.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = 10
PEER_IMPORTS = {"prefect": "import prefect", "dagster": "import dagster", "zenml": "import zenml",
                "metaflow": "import metaflow"}


def median_seconds(cmd: list[str]) -> float:
    subprocess.run(cmd, capture_output=True, check=True)   # warm the file cache
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    bare = median_seconds([sys.executable, "-c", "pass"])
    cli = str(Path(sys.executable).parent / "conveyor")
    rows = {"python -c pass": bare,
            "conveyor --help": median_seconds([cli, "--help"]),
            "import conveyor; declare a step": median_seconds(
                [sys.executable, "-c", "import conveyor as cv\n@cv.step\ndef f(x: int) -> int: return x"])}
    for name, code in PEER_IMPORTS.items():
        py = HERE / "peers" / ".venvs" / name / "bin" / "python"
        if py.exists():
            rows[f"{name}: {code}"] = median_seconds([str(py), "-c", code])
    for cmd, seconds in rows.items():
        print(json.dumps({"command": cmd, "median_ms": round(seconds * 1000, 1),
                          "over_bare_python_ms": round((seconds - bare) * 1000, 1)}))


if __name__ == "__main__":
    main()
