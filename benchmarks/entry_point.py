"""The fixed cost every exported task pays: `python -m conveyor step exec` on a trivial step.

Times, from process start to exit: a trivial step whose result is cached, and one that computes
(a new parameter value each time), with and without a database, against bare `python -c pass`
and against the peers' own imports (the least their step entry points pay) where installed.
Prints one JSON object per row. Target: at most 0.3 s over bare Python.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = 15
PIPELINE = '''
import conveyor as cv


@cv.step
def bump(x: int) -> int:
    return x + 1


@cv.pipeline
def trivial(x: int = 1):
    bump(x)
'''
PEER_IMPORTS = {"zenml": "import zenml", "metaflow": "import metaflow"}


def median(cmds: list[list[str]], env: dict[str, str]) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of the commands after the first."""
    subprocess.run(cmds[0], env=env, capture_output=True, check=True)   # warm the file cache
    times, cpu = [], []
    for cmd in cmds[1:]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True)
        times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(done.stderr.decode())
    return statistics.median(times), statistics.median(cpu)


def main() -> None:
    from conveyor.export.plan import lower
    from conveyor.runtime.loader import load_pipeline

    work = Path(tempfile.mkdtemp(prefix="conveyor-entry-"))
    (work / "trivial.py").write_text(PIPELINE)
    plan = lower(load_pipeline(f"{work / 'trivial.py'}:trivial"), {}, ref="trivial.py:trivial",
                 project_dir=str(work), image="-", python=sys.executable)
    task = plan.tasks["bump"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env = {**base, "CONVEYOR_ARTIFACT_ROOT": str(work / "root"), "CONVEYOR_HOME": str(work / "home")}
    db_env = {**env, "CONVEYOR_METADATA_URL": f"sqlite:///{work / 'meta.db'}"}

    def cmd(run: str, x: int) -> list[str]:
        return plan.command(task, run_id=run, params={"x": str(x)})

    bare, bare_cpu = median([[sys.executable, "-c", "pass"]] * (RUNS + 1), base)
    rows = {"python -c pass": (bare, bare_cpu),
            # the floor of any task that opens a database through SQLAlchemy
            "python -c 'import sqlalchemy'": median([[sys.executable, "-c", "import sqlalchemy"]] * (RUNS + 1), base)}
    for label, e in (("no database", env), ("sqlite database", db_env)):
        rows[f"computed step, {label}"] = median([cmd(f"c-{label[:2]}-{i}", 1000 + i) for i in range(RUNS + 1)], e)
        rows[f"cached step, {label}"] = median([cmd(f"h-{label[:2]}-{i}", 1000) for i in range(RUNS + 1)], e)
    for name, code in PEER_IMPORTS.items():
        py = HERE / "peers" / ".venvs" / name / "bin" / "python"
        if py.exists():
            rows[f"{name}: {code} (its entry point pays at least this)"] = median([[str(py), "-c", code]] * (RUNS + 1),
                                                                                base)
    for what, (seconds, cpu) in rows.items():
        print(json.dumps({"case": what, "median_ms": round(seconds * 1000, 1),
                          "over_bare_python_ms": round((seconds - bare) * 1000, 1),
                          "cpu_ms": round(cpu * 1000, 1), "cpu_over_bare_ms": round((cpu - bare_cpu) * 1000, 1),
                          "target_over_bare_ms": 300}))


if __name__ == "__main__":
    main()
