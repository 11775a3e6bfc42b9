"""Batch scoring on a two-node local Ray cluster against the local two-worker path, in one run.

1,000,000 rows x 20 features, Parquet to Parquet, logistic regression, chunks of 100,000 rows. The
cluster is started here (a head and a second node of one CPU each, on 127.0.0.1, in their own
process groups, stopped at the end), so both sides have two CPUs. Ray is timed cold (the first run
of a fresh driver: worker processes start and import) and warm (the same driver again, into a new
folder). Every run, local ones too, is timed with the cluster up (its idle nodes share the two
cores). Target: Ray at least 0.9x the local path's throughput. One machine shows overhead only;
scaling shows with nodes that bring their own cores and disks (see docs/batch-scoring.md).

Then ``BENCH_ROUNDS`` (default 3) alternating rounds of one-shot drivers, each a new Python process
that scores once (what one ``conveyor batch score`` command pays; timed around ``score_batch`` in
that process): the local path, then on the cluster; each round's ratio. (The local runs in this
process after it connected to Ray are slower than they would be: with Ray's threads running, the
local path starts its workers by forkserver instead of fork.)

Then ``BENCH_ROUNDS`` alternating rounds of the command users run, ``conveyor batch score`` of a
registered model (the same logistic regression, in a Conveyor home made here): ``--workers 2``
locally against ``--executor ray --address ...``, each timed as the command's whole wall time
(start-up, the registry, connecting, scoring). On Ray the scorers outlive a command
(``CONVEYOR_RAY_BATCH_IDLE_S``): the first command of a code context starts them, the next ones
find them warm; each round's figure is reported, the first one marked.

Prints one JSON object per measurement and a summary with the ratios (throughput of Ray over the
faster of two local runs, one before and one after the cluster's; per round for the one-shot drivers).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS, FEATURES, CHUNK = 1_000_000, 20, 100_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ONE_SHOT = """
import functools, sys, time
sys.path.insert(0, sys.argv[4])
from batch_ray import CHUNK, load
from conveyor.serving.batch import score_batch
t = time.perf_counter()
ray = sys.argv[5] != "local"
score_batch(functools.partial(load, sys.argv[2]), sys.argv[1], sys.argv[3], model_version="bench:1",
            workers=None if ray else 2, chunk_rows=CHUNK, progress=False, executor="ray" if ray else "process",
            address=sys.argv[5] if ray else None)
print(time.perf_counter() - t)
"""
LOOPBACK = "127.0.0.1"


def make_model(path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, FEATURES))
    model = LogisticRegression().fit(X, X[:, 0] + rng.normal(size=5000) > 0)
    path.write_bytes(pickle.dumps(model))


def load(path: str) -> tuple[object, str]:
    return pickle.loads(Path(path).read_bytes()), "bench:1"


def _port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_cluster(temp: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A head and a second node of one CPU each; returns the address once both are alive."""
    ray = str(Path(sys.executable).parent / "ray")
    port = _port()
    address = f"{LOOPBACK}:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    common = ["--block", "--node-ip-address", LOOPBACK, "--disable-usage-stats", "--num-cpus", "1",
              "--min-worker-port", "0", "--max-worker-port", "0"]
    log = (temp / "nodes.log").open("ab")
    procs = [subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard=false",
                               "--temp-dir", str(temp / "ray"), *common], stdout=log, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)]
    _wait_nodes(address, 1)
    procs.append(subprocess.Popen([ray, "start", "--address", address, *common], stdout=log,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True))
    _wait_nodes(address, 2)
    return address, procs


def _wait_nodes(address: str, count: int, timeout: float = 300) -> None:
    probe = (f"import ray\nray.init(address={address!r}, _node_ip_address={LOOPBACK!r}, logging_level='ERROR')\n"
             "print(sum(1 for n in ray.nodes() if n['Alive']))\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                             check=False)
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines and int(lines[-1]) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"the benchmark's Ray cluster did not reach {count} nodes in {timeout:.0f} s")


def stop_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _same_parts(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("part-*.parquet"))
    return names == sorted(p.name for p in b.glob("part-*.parquet")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def one_shot(src: Path, model: Path, out: Path, address: str) -> float:
    """Seconds of ``score_batch`` in a new process: on the cluster at ``address`` (connection and workers
    new), or with ``local`` the local path with 2 workers (forked from that process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", ONE_SHOT, str(src), str(model), str(out),
                           str(Path(__file__).resolve().parent), address], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the one-shot driver failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def register(home: Path, model_path: Path, src: Path) -> None:
    """The benchmark's model as version 1 of ``bench`` in a Conveyor home at ``home`` (features f0..f19)."""
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    client = Client(load_settings(env={"CONVEYOR_HOME": str(home)}))
    sample = pq.read_table(src).slice(0, 1000).to_pandas()
    client.registry.register("bench", pickle.loads(model_path.read_bytes()), data=sample)
    client.close()


def cli(home: Path, src: Path, out: Path, address: str) -> float:
    """Wall seconds of one ``conveyor batch score`` command: ``local`` (2 worker processes) or on the cluster."""
    where = ["--workers", "2"] if address == "local" else ["--executor", "ray", "--address", address]
    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    env.pop("CONVEYOR_EXECUTOR", None)
    t = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "conveyor"), "batch", "score", "bench", "--input", str(src),
                           "--output", str(out), "--chunk-rows", str(CHUNK), "--json", *where], capture_output=True,
                          text=True, env=env, cwd=home, timeout=600, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"conveyor batch score failed: {done.stderr[-2000:]}")
    return seconds


def alternate(run: str, folder: Path, local: Callable[[Path], float], on_ray: Callable[[Path], float]) -> list[float]:
    """``ROUNDS`` rounds of ``local(out)`` then ``on_ray(out)`` (each returns seconds); each round's ratio."""
    ratios = []
    for r in range(ROUNDS):
        here_out, there_out = folder / f"{run}-local-{r}", folder / f"{run}-ray-{r}"
        here, there = local(here_out), on_ray(there_out)
        ratios.append(here / there)
        print(json.dumps({"tool": "conveyor", "executor": "ray", "run": f"{run}-{r}", "rows": ROWS,
                          "scorers": "started by the first of this code context" if r == 0 else "warm",
                          "seconds": round(there, 3), "local_seconds": round(here, 3), "ratio": round(here / there, 3),
                          "same_local_output": _same_parts(here_out, folder / "local"),
                          "same_output_as_local": _same_parts(there_out, folder / "local")}))
    return ratios


def main() -> None:
    from conveyor.serving.batch import score_batch

    with tempfile.TemporaryDirectory(prefix="conveyor-batch-ray-") as d:
        folder = Path(d)
        rng = np.random.default_rng(1)
        src = folder / "input.parquet"
        pq.write_table(pa.table({f"f{i}": rng.normal(size=ROWS) for i in range(FEATURES)}), src,
                       row_group_size=CHUNK)
        model_path = folder / "model.pkl"
        make_model(model_path)
        loader = functools.partial(load, str(model_path))

        def local(label: str) -> float:
            t = time.perf_counter()
            score_batch(loader, str(src), str(folder / label), model_version="bench:1", workers=2,
                        chunk_rows=CHUNK, progress=False)
            s = time.perf_counter() - t
            print(json.dumps({"tool": "conveyor", "executor": "process", "workers": 2, "run": label, "rows": ROWS,
                              "seconds": round(s, 3), "rows_per_s": round(ROWS / s)}))
            return s

        # the cluster first: its idle nodes share the machine's two cores with every run, local ones too
        address, procs = start_cluster(folder)
        try:
            local_s = local("local")
            results = {}
            for label in ("cold", "warm"):
                out = folder / f"ray-{label}"
                t = time.perf_counter()
                score_batch(loader, str(src), str(out), model_version="bench:1", workers=None, chunk_rows=CHUNK,
                            progress=False, executor="ray", address=address)
                s = results[label] = time.perf_counter() - t
                print(json.dumps({"tool": "conveyor", "executor": "ray", "nodes": 2, "cpus": 2, "run": label,
                                  "rows": ROWS, "seconds": round(s, 3), "rows_per_s": round(ROWS / s),
                                  "ratio_to_first_local": round(local_s / s, 3),
                                  "same_output_as_local": _same_parts(out, folder / "local")}))
            # the local path again, after the cluster runs: the machine's load drifts; the faster local run counts
            local_s = min(local_s, local("local-again"))
            # both as a new process each: this one has a Ray connection now, so its local path can no longer
            # fork its workers (threads hold locks) and would start them by forkserver instead
            rounds = alternate("one-shot-driver", folder,
                               lambda out: one_shot(src, model_path, out, "local"),
                               lambda out: one_shot(src, model_path, out, address))
            home = folder / "home"
            home.mkdir()
            register(home, model_path, src)
            commands = alternate("cli-command", folder, lambda out: cli(home, src, out, "local"),
                                 lambda out: cli(home, src, out, address))
            print(json.dumps({"summary": "batch scoring on 2-node local Ray vs local 2 workers (faster of two local "
                              "runs)", "target": 0.9, "local_seconds": round(local_s, 3),
                              "cli_ratios": [round(x, 3) for x in commands],
                              "cli_ratio_warm_min": round(min(commands[1:]), 3) if len(commands) > 1 else None,
                              "ratio_cold": round(local_s / results["cold"], 3),
                              "ratio_warm": round(local_s / results["warm"], 3),
                              "meets_target_warm": local_s / results["warm"] >= 0.9,
                              "one_shot_ratios": [round(x, 3) for x in rounds],
                              "one_shot_ratio_median": round(sorted(rounds)[len(rounds) // 2], 3) if rounds else None,
                              "load_average_1m": round(os.getloadavg()[0], 2)}))
        finally:
            import ray

            ray.shutdown()
            stop_cluster(procs)
            shutil.rmtree(folder / "ray", ignore_errors=True)


if __name__ == "__main__":
    main()
