"""The serving container's cost: time from process start to a ready ``/ping``, and single-row latency.

Contenders, on the same registered scikit-learn pipeline:

- ``serve-container``: ``conveyor serve-container serve`` on a bundle folder (what SageMaker runs);
- ``serve-container (tar.gz)``: the same with ``model.tar.gz`` left packed in the model folder;
- ``serve``: ``conveyor serve`` on the registry (SQLite metadata, local artifact root), the floor
  the container must not be slower than.

Prints JSON. ``python benchmarks/container_start.py [--rounds 3] [--requests 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], url: str) -> tuple[subprocess.Popen, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        time.sleep(0.01)


def _latency(url: str, body: dict, n: int) -> float:
    with httpx.Client() as http:
        for _ in range(20):
            http.post(url, json=body)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = http.post(url, json=body)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client
    from conveyor.serving.bundle import export_bundle
    from tests.serving.conftest import fitted_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}, "CONVEYOR_HOME": str(home)}
        client = Client(load_settings(env))
        model, X = fitted_pipeline()
        client.registry.register("churn", model, data=X)
        client.metadata.endpoints.create("churn", {"routes": [{"model": "churn:1", "weight": 100}]}, "bench")
        export_bundle(client, "churn:1", f"{tmp}/bundle")
        (Path(tmp) / "packed").mkdir()
        export_bundle(client, "churn:1", f"{tmp}/packed/model.tar.gz")
        client.close()
        body = {"instances": X.head(1).to_dict(orient="records")}
        bare = {"PATH": os.environ["PATH"], "HOME": tmp}
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.rounds):
            for name, cmd_env in {
                "serve-container": (["serve-container", "serve", "--model-dir", f"{tmp}/bundle",
                                     "--no-access-log"], bare),
                "serve-container (tar.gz)": (["serve-container", "serve", "--model-dir", f"{tmp}/packed",
                                              "--no-access-log"], bare),
                "serve": (["serve", "--no-access-log", "--no-prediction-log", "--auth", "off"], env),
            }.items():
                port = _port()
                extra, proc_env = cmd_env
                cmd = [CONVEYOR, *extra, "--port", str(port)]
                proc, ready = _start(cmd, proc_env, f"http://127.0.0.1:{port}/ping")
                try:
                    p50 = _latency(f"http://127.0.0.1:{port}/invocations", body, args.requests)
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                r = results.setdefault(name, {"ready_s": [], "p50_ms": []})
                r["ready_s"].append(round(ready, 3))
                r["p50_ms"].append(round(p50 * 1000, 3))
        print(json.dumps({k: {"ready_s": statistics.mean(v["ready_s"]), "p50_ms": statistics.mean(v["p50_ms"]),
                              "runs": v} for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
