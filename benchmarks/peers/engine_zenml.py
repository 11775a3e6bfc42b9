"""ZenML running W1-W4 on its default local stack in a temporary repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("ZENML_BENCH_REPO") != HERE:
    # ZenML resolves step code relative to its repository root: run a copy from inside a fresh one.
    repo = tempfile.mkdtemp()
    for name in ("engine_zenml.py", "engine_common.py"):
        shutil.copy(os.path.join(HERE, name), repo)
    os.environ["ZENML_BENCH_REPO"] = repo
    os.execv(sys.executable, [sys.executable, os.path.join(repo, "engine_zenml.py")])
repo = HERE
os.environ["ZENML_CONFIG_PATH"] = os.path.join(repo, ".zenconfig")
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ["ZENML_LOGGING_VERBOSITY"] = "ERROR"
os.environ["AUTO_OPEN_DASHBOARD"] = "false"
sys.path.insert(0, os.path.dirname(__file__))
os.chdir(repo)
subprocess.run([os.path.join(os.path.dirname(sys.executable), "zenml"), "init"], check=True, capture_output=True)

from engine_common import emit, frame_sum, inc, make_frame, median, square  # noqa: E402
from zenml import pipeline, step  # noqa: E402

s_inc = step(inc)
s_square = step(square)
s_make = step(make_frame)
s_sum = step(frame_sum)


@step
def produce(n: int) -> list:
    return list(range(n))


@step
def join(a: int, b: int, c: int, d: int, e: int, f: int, g: int, h: int, i: int, j: int, k: int, l: int,  # noqa: E741
         m: int, n: int, o: int, p: int) -> int:
    return a + b + c + d + e + f + g + h + i + j + k + l + m + n + o + p


@pipeline
def w1():
    x = s_inc(0, id="inc_0")
    for i in range(1, 20):
        x = s_inc(x, id=f"inc_{i}")


@pipeline
def w2():
    produce(16)
    outs = [s_square(i, id=f"sq_{i}") for i in range(16)]
    join(*outs)


@pipeline
def w3():
    s_sum(s_make(1_000_000))


if __name__ == "__main__":
    nocache = {"enable_cache": False}
    w1.with_options(**nocache)()
    results = {"W1": median(lambda: w1.with_options(**nocache)()),
               "W2": median(lambda: w2.with_options(**nocache)()),
               "W3": median(lambda: w3.with_options(**nocache)())}
    w1.with_options(enable_cache=True)()
    results["W4"] = median(lambda: w1.with_options(enable_cache=True)())
    emit(results)
