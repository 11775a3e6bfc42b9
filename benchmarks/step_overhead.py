"""Engine overhead per step against a hand-written floor (and peers, when installed).

Workloads (each timed in one process, median of several repeats):
  W1  a chain of 20 steps passing an int
  W2  one producer, 16 parallel steps, one join
  W3  two steps passing a 1,000,000 x 10 float DataFrame
  W4  W1 again, fully cached
Floor: the same functions called by hand; each output pickled to a file and one SQLite row
written and committed per step. Peers run through benchmarks/peers/engine_<name>.py in their own
virtualenvs (benchmarks/peers/install_peers.sh engine) and are reported as skipped when absent.

Also W1 with resource accounting on and off (CONVEYOR_ACCOUNTING=0), interleaved in one run:
the cost of measuring each attempt and writing its step_attempts row.

Prints one JSON object per (workload, tool). `python benchmarks/step_overhead.py chain` runs W1 and W4
alone against the floor's W1 (a quick check of the per-step cost and the cached re-run).
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
STEPS = {"W1": 20, "W2": 18, "W3": 2, "W4": 20}


def inc(x: int) -> int:
    return x + 1


def square(x: int) -> int:
    return x * x


def make_frame(rows: int) -> object:
    import numpy as np
    import pandas as pd

    return pd.DataFrame(np.random.default_rng(0).normal(size=(rows, 10)), columns=[f"c{i}" for i in range(10)])


def frame_sum(df: object) -> float:
    return float(df["c0"].sum())


# --- the floor ----------------------------------------------------------------------------------

class Floor:
    """Call, pickle the output to a file, write one row and commit: per step."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = sqlite3.connect(folder / "floor.db")
        self.db.execute("CREATE TABLE IF NOT EXISTS steps (id INTEGER PRIMARY KEY, name TEXT, path TEXT, at REAL)")
        self.n = 0

    def record(self, name: str, value: object) -> object:
        self.n += 1
        path = self.folder / f"{self.n}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(value, fh)
        self.db.execute("INSERT INTO steps (name, path, at) VALUES (?, ?, ?)", (name, str(path), time.time()))
        self.db.commit()
        return value


def floor_w1(f: Floor) -> None:
    x = f.record("inc", inc(0))
    for _ in range(19):
        x = f.record("inc", inc(x))


def floor_w2(f: Floor) -> None:
    from concurrent.futures import ThreadPoolExecutor

    items = f.record("produce", list(range(16)))
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(square, items))
    for o in outs:
        f.record("square", o)
    f.record("join", sum(outs))


def floor_w3(f: Floor) -> None:
    df = f.record("make", make_frame(1_000_000))
    f.record("sum", frame_sum(df))


# --- conveyor -----------------------------------------------------------------------------------

def conveyor_pipelines() -> dict[str, object]:
    import conveyor as cv

    s_inc = cv.step(inc)
    s_square = cv.step(square)

    @cv.step
    def produce(n: int) -> list:
        return list(range(n))

    @cv.step
    def join(xs: list) -> int:
        return sum(xs)

    s_make = cv.step(make_frame)
    s_sum = cv.step(frame_sum)

    @cv.pipeline
    def w1(n: int = 20):
        x = s_inc(0)
        for _ in range(n - 1):
            x = s_inc(x)

    @cv.pipeline
    def w2(n: int = 16):
        join(s_square.map(x=produce(n)))

    @cv.pipeline
    def w3(rows: int = 1_000_000):
        s_sum(s_make(rows))

    return {"W1": w1, "W2": w2, "W3": w3}


def timed(fn, repeats: int = REPEATS) -> float:
    """Median seconds of ``repeats`` calls (each gets a fresh setup through fn itself)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_floor() -> dict[str, float]:
    out = {}
    for name, fn in (("W1", floor_w1), ("W2", floor_w2), ("W3", floor_w3)):
        def run(fn=fn) -> None:
            with tempfile.TemporaryDirectory() as d:
                fn(Floor(Path(d)))
        out[name] = timed(run)
    out["W4"] = out["W1"]   # the floor has no cache: a re-run does the same work
    return out


def measure_conveyor() -> dict[str, float]:
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    pipes = conveyor_pipelines()
    out: dict[str, float] = {}
    for name in ("W1", "W2", "W3", "W1"):   # the first W1 warms imports and the environment snapshot
        times = []
        for _ in range(REPEATS):
            with tempfile.TemporaryDirectory() as d:
                client = Client(load_settings(env={"CONVEYOR_HOME": d}))
                client.metadata        # opening and migrating the store happens once per process in real use
                client.artifacts
                t = time.perf_counter()
                client.run_pipeline(pipes[name], {}, cache=False)
                times.append(time.perf_counter() - t)
                client.close()
        out[name] = statistics.median(times)
    with tempfile.TemporaryDirectory() as d:
        client = Client(load_settings(env={"CONVEYOR_HOME": d}))
        client.run_pipeline(pipes["W1"], {})
        out["W4"] = timed(lambda: client.run_pipeline(pipes["W1"], {}))
        client.close()
    return out


def measure_accounting(rounds: int = int(os.environ.get("BENCH_ROUNDS", str(40 * REPEATS)))) -> dict[str, float]:
    """W1 with accounting on and off, alternated run by run (so drift in the machine hits both alike).

    Each round runs both modes back to back (the order alternating); the difference of a round's two
    runs is one sample, so a neighbour's burst of load that spans a round cancels out. The process's
    CPU time per run is taken too: the accounting is CPU work, and CPU time does not count the
    waits for the disk and the cores that neighbours lengthen."""
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    w1 = conveyor_pipelines()["W1"]
    times: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as d:
        clients = {mode: Client(load_settings(env={"CONVEYOR_HOME": f"{d}/{mode}",
                                                    "CONVEYOR_ACCOUNTING": "1" if mode == "on" else "0"}))
                   for mode in times}
        for client in clients.values():
            for _ in range(3):
                client.run_pipeline(w1, {}, cache=False)   # warm: imports, the store's schema and pages
        for i in range(rounds):
            for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
                t, c = time.perf_counter(), time.process_time()
                clients[mode].run_pipeline(w1, {}, cache=False)
                times[mode].append(time.perf_counter() - t)
                cpu[mode].append(time.process_time() - c)
        for client in clients.values():
            client.close()
    cpu_diffs = sorted(a - b for a, b in zip(cpu["on"], cpu["off"], strict=True))
    cq = statistics.quantiles(cpu_diffs, n=4)
    diffs = sorted(a - b for a, b in zip(times["on"], times["off"], strict=True))
    q1, q3 = statistics.quantiles(diffs, n=4)[0], statistics.quantiles(diffs, n=4)[2]
    # the fastest run of each mode as well: on a shared machine the median moves with the neighbours' load
    return {**{mode: statistics.median(ts) for mode, ts in times.items()},
            **{f"{mode}_min": min(ts) for mode, ts in times.items()},
            "diff_median": statistics.median(diffs), "diff_q1": q1, "diff_q3": q3, "rounds": rounds,
            "cpu_diff_median": statistics.median(cpu_diffs), "cpu_diff_q1": cq[0], "cpu_diff_q3": cq[2],
            "cpu_off": statistics.median(cpu["off"])}


def measure_accounting_parts(n: int = 2000) -> dict[str, float]:
    """The added work alone, in microseconds a step: measuring an attempt where it runs, and the
    step run's end written with and without its step_attempts row (fastest of ``n``, interleaved)."""
    from conveyor.runtime import worker
    from conveyor.runtime.usage import ThreadMeter
    from conveyor.store.artifacts.tally import Tally
    from conveyor.store.metadata import MetadataStore
    from conveyor.store.metadata.records import StepOutcome

    task = worker.StepTask(run_id="r", step_run_id="s", node_name="n", step_name="n", args={}, outputs=("output",),
                           multiple_outputs=False, retries=0, retry_on=(Exception,), backoff=0.0, backoff_max=0.0,
                           timeout=None, artifact_root="", inline_max_bytes=0)
    meter = []
    for _ in range(n):
        t = time.perf_counter()
        worker._noted(task, [], 1, 0.0, ThreadMeter().stop(), None, Tally())
        meter.append(time.perf_counter() - t)
    row = dict(attempt=1, status="completed", executor="thread", host="h", started_at=1.0, ended_at=2.0, wall_s=1.0,
               cpu_s=1.0, peak_rss_bytes=1, bytes_read=0, bytes_written=1, gpu_s=None, gpu_peak_bytes=None, error=None)
    writes: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as d:
        md = MetadataStore(f"sqlite:///{d}/m.db")
        run = md.runs.create(kind="pipeline", name=None, pipeline_id=None, pipeline_name="b", pipeline_ref=None,
                             parameters={}, tags={}, environment_hash=None, git_commit=None, git_dirty=None,
                             options={}, pid=1, host="h")
        for _ in range(n // 4):
            for mode, rows in (("on", [row]), ("off", [])):
                sid = md.steps.start(run, "a", "a", cache_key="k", code_hash="c")
                t = time.perf_counter()
                md.steps.finish(sid, run, StepOutcome(status="succeeded", attempt_rows=rows))
                writes[mode].append(time.perf_counter() - t)
        md.close()
    return {"measure_us": min(meter) * 1e6, "measure_median_us": statistics.median(meter) * 1e6,
            "write_added_us": (min(writes["on"]) - min(writes["off"])) * 1e6,
            "write_added_median_us": (statistics.median(writes["on"]) - statistics.median(writes["off"])) * 1e6}


def measure_peer(name: str) -> dict[str, float] | None:
    python = HERE / "peers" / ".venvs" / name / "bin" / "python"
    script = HERE / "peers" / f"engine_{name}.py"
    if not python.exists() or not script.exists():
        return None
    proc = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(json.dumps({"tool": name, "error": proc.stderr[-2000:]}), file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(tool: str, results: dict[str, float], floor: dict[str, float]) -> None:
    for w, seconds in results.items():
        n = STEPS[w]
        print(json.dumps({
            "workload": w, "tool": tool, "seconds": round(seconds, 5), "per_step_ms": round(seconds / n * 1000, 3),
            "overhead_per_step_ms": round((seconds - floor[w]) / n * 1000, 3),
            "ratio_to_floor": round(seconds / floor[w], 3),
        }), flush=True)


def main() -> None:
    floor = measure_floor()
    report("floor", floor, floor)
    report("conveyor", measure_conveyor(), floor)
    report_accounting(measure_accounting())
    print(json.dumps({"workload": "accounting parts", **{k: round(v, 1) for k, v in measure_accounting_parts().items()}}),
          flush=True)
    for peer in ("prefect", "dagster", "zenml", "metaflow"):
        res = measure_peer(peer)
        if res is None:
            installed = (HERE / "peers" / ".venvs" / peer / "bin" / "python").exists()
            print(json.dumps({"tool": peer, "skipped": "failed (its error is on stderr)" if installed
                              else "not installed (benchmarks/peers/install_peers.sh engine)"}))
        else:
            report(peer, res, floor)


def report_accounting(acct: dict[str, float]) -> None:
    n = STEPS["W1"]
    per_step = {k: round(acct[k] / n * 1000, 4) for k in ("diff_median", "diff_q1", "diff_q3", "cpu_diff_median",
                                                        "cpu_diff_q1", "cpu_diff_q3")}
    print(json.dumps({"workload": "W1", "tool": "conveyor accounting on vs off", "rounds": acct["rounds"],
                      **{f"seconds_{k}": round(acct[k], 5) for k in ("on", "off", "on_min", "off_min")},
                      "added_per_step_ms_median": per_step["diff_median"],
                      "added_per_step_ms_iqr": [per_step["diff_q1"], per_step["diff_q3"]],
                      "added_per_step_ms_min": round((acct["on_min"] - acct["off_min"]) / n * 1000, 4),
                      "cpu_added_per_step_ms_median": per_step["cpu_diff_median"],
                      "cpu_added_per_step_ms_iqr": [per_step["cpu_diff_q1"], per_step["cpu_diff_q3"]],
                      "cpu_off_per_step_ms": round(acct["cpu_off"] / n * 1000, 4),
                      "ratio_on_to_off": round(acct["on"] / acct["off"], 3), "target_per_step_ms": 0.05}),
          flush=True)


def measure_chain() -> dict[str, float]:
    """W1 (the floor and Conveyor) and W4 only: the chain's per-step cost and its fully cached re-run."""
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    def floor() -> None:
        with tempfile.TemporaryDirectory() as d:
            floor_w1(Floor(Path(d)))

    w1 = conveyor_pipelines()["W1"]
    runs = []
    for i in range(REPEATS + 1):   # the first warms imports and the environment snapshot
        with tempfile.TemporaryDirectory() as d:
            client = Client(load_settings(env={"CONVEYOR_HOME": d}))
            client.metadata
            client.artifacts
            t = time.perf_counter()
            client.run_pipeline(w1, {}, cache=False)
            runs.append(time.perf_counter() - t)
            client.close()
    with tempfile.TemporaryDirectory() as d:
        client = Client(load_settings(env={"CONVEYOR_HOME": d}))
        client.run_pipeline(w1, {})
        cached = timed(lambda: client.run_pipeline(w1, {}))
        client.close()
    return {"floor": timed(floor), "W1": statistics.median(runs[1:]), "W4": cached}


if __name__ == "__main__":
    if sys.argv[1:] == ["chain"]:   # W1 and W4 only, against the floor's W1
        res = measure_chain()
        print(json.dumps({"workload": "W1/W4", **{f"{k}_ms": round(v * 1000, 2) for k, v in res.items()},
                          "W1_ratio_to_floor": round(res["W1"] / res["floor"], 3),
                          "W1_overhead_per_step_ms": round((res["W1"] - res["floor"]) / 20 * 1000, 3)}), flush=True)
    elif sys.argv[1:] == ["accounting"]:   # only the on/off comparison
        report_accounting(measure_accounting())
        print(json.dumps({"workload": "accounting parts",
                          **{k: round(v, 1) for k, v in measure_accounting_parts().items()}}), flush=True)
    else:
        main()
