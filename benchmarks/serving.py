"""Online serving throughput and latency under wrk, against a minimal FastAPI floor (and peers when installed).

One worker pinned to core 0, wrk with 16 connections pinned to core 1, a 20-feature logistic
regression, 1-row and 100-row requests. MLflow's ``models serve`` and MLServer join when their
virtualenvs exist (``bash benchmarks/peers/install_peers.sh serving``). Conveyor runs with auth (an API key), signature
validation, Prometheus metrics, the access log and the Parquet prediction log all on.
Two floors run in the same rounds: the plain FastAPI endpoint the targets refer to
(``await request.json()``), and a stricter one parsing with orjson. Prints one JSON object per
(server, rows): requests/s, p50/p99 latency, ratios to both floors and to MLServer, and the lowest
and highest per-round ratio to the floor. ``conveyor-sklearn-predict`` (named in BENCH_SERVERS) is
the same server calling scikit-learn's ``predict`` instead of the compiled one (serving/compiled.py).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FEATURES = 20
DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code < 400:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def wrk(url: str, body: str, headers: dict[str, str]) -> dict[str, float]:
    lua = "wrk.method = 'POST'\nwrk.body = [==[" + body + "]==]\n"
    lua += "".join(f"wrk.headers['{k}'] = '{v}'\n" for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency",
                          "-s", fh.name, url], capture_output=True, text=True, check=True).stdout
    os.unlink(fh.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": int(errors.group(1)) if errors else 0,
            "requests": requests}


def bodies(rows: int, oip: bool = False) -> str:
    X = np.random.default_rng(rows).normal(size=(rows, FEATURES)).round(6)
    if oip:   # MLServer speaks the Open Inference Protocol
        return json.dumps({"inputs": [{"name": "input-0", "shape": [rows, FEATURES], "datatype": "FP64",
                                       "data": X.ravel().tolist()}]})
    return json.dumps({"instances": X.tolist()})


def peer_servers(work: Path) -> dict[str, dict]:
    """MLflow's and MLServer's servers, when their virtualenvs exist (benchmarks/peers/install_peers.sh serving)."""
    found = {}
    for name in ("mlflow", "mlserver"):
        py = HERE / "peers" / ".venvs" / name / "bin" / "python"
        if not py.exists():
            continue
        out = work / name
        out.mkdir()
        port = free_port()
        subprocess.run([str(py), str(HERE / "serving_apps" / "peer_setup.py"), name, str(out), str(port)],
                       check=True, capture_output=True)
        bin_dir = py.parent
        if name == "mlflow":
            found[name] = {"path_prefix": str(bin_dir), "cmd": [str(bin_dir / "mlflow"), "models", "serve", "-m", str(out / "model"),
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
                           "port": port, "ready": "/ping", "path": "/invocations", "oip": False}
        else:
            found[name] = {"path_prefix": str(bin_dir), "cmd": [str(bin_dir / "mlserver"), "start", str(out)],
                           "port": port,
                           "ready": "/v2/health/ready", "path": "/v2/models/bench/infer", "oip": True}
    return found


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", "0", *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def usage_overhead(model: object, rounds: int = 21, calls: int = 1000) -> dict[str, float]:
    """The usage accounting's cost on the request path, in process (wrk through HTTP is too noisy to see it).

    ``ServingService.predict`` (1 row) with and without a UsageMeter in alternating rounds (the median of
    the per-round ratios), and the accounting alone (its clock reads and ``add``), timed by itself.
    """
    import statistics
    import timeit

    from conveyor.serving.catalog import ColumnSpec, EndpointSpec, InMemoryCatalog, ModelKey, Signature, WeightedRoute
    from conveyor.serving.service import ServingService
    from conveyor.serving.usage import UsageMeter

    sig = Signature(tuple(ColumnSpec(f"f{i}", "float64") for i in range(FEATURES)))
    cat = InMemoryCatalog()
    cat.add_model("bench", 1, model, sig)
    cat.set_endpoint(EndpointSpec("bench", (WeightedRoute(ModelKey("bench", 1), 100),)))
    meter = UsageMeter(lambda records: None, interval_s=3600)
    services = {"off": ServingService(cat), "on": ServingService(cat, usage=meter)}
    columns = {f"f{i}": [0.1 * i] for i in range(FEATURES)}
    per_call: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(rounds):
        for label in (("off", "on") if i % 2 else ("on", "off")):
            start = time.perf_counter()
            for _ in range(calls):
                services[label].predict(columns, endpoint="bench", headers={}, protocol="bench")
            per_call[label].append((time.perf_counter() - start) / calls)
    ratios = [on / off for on, off in zip(per_call["on"], per_call["off"])]
    alone = min(timeit.repeat("c = thread_time(); s = perf_counter(); "
                              "meter.add('bench', 'bench', 1, thread_time() - c, perf_counter() - s)",
                              globals={"thread_time": time.thread_time, "perf_counter": time.perf_counter,
                                       "meter": meter}, number=20_000, repeat=5)) / 20_000
    predict = statistics.median(per_call["off"])
    return {"predict_us": round(predict * 1e6, 1), "usage_us_per_request": round(alone * 1e6, 2),
            "usage_share": round(alone / predict, 4), "ab_ratio_median": round(statistics.median(ratios), 4)}


def main() -> None:
    if os.environ.get("BENCH_USAGE_ONLY"):   # only the in-process usage-accounting measurement
        from sklearn.linear_model import LogisticRegression

        X = np.random.default_rng(0).normal(size=(5000, FEATURES))
        print(json.dumps(usage_overhead(LogisticRegression().fit(X, X[:, 0] > 0))))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    from sklearn.linear_model import LogisticRegression

    work = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, FEATURES))
    model = LogisticRegression().fit(X, X[:, 0] + rng.normal(size=5000) > 0)
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "BENCH_MODEL": str(work / "model.pkl"), "CONVEYOR_HOME": str(work / "home"),
           "PYTHONPATH": os.pathsep.join([str(HERE / "serving_apps"), str(HERE.parent)])}   # this checkout's code

    # Conveyor: register, create the endpoint and a key, like a user does.
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client
    from conveyor.serving.auth import generate_key

    client = Client(load_settings(env={"CONVEYOR_HOME": str(work / "home")}))
    client.registry.register("bench", model, data=X[:100])
    client.metadata.endpoints.create("bench", {"routes": [{"model": "bench:1", "weight": 100}]}, "bench")
    key_id, key, digest = generate_key()
    client.metadata.endpoints.add_key(key_id, digest, "predict", None, None, None, "bench")
    client.close()

    floor_port, fast_floor_port, conveyor_port = free_port(), free_port(), free_port()
    def floor(app: str, port: int) -> dict:
        # uvicorn as it installs (pure-Python loop and parser), whatever else is in the virtualenv
        return {"cmd": [str(bin_dir / "python"), "-m", "uvicorn", f"floor_app:{app}", "--host", "127.0.0.1",
                        "--log-level", "warning", "--no-access-log", "--port", str(port),
                        "--loop", "asyncio", "--http", "h11"],
                "port": port, "ready": "/docs", "path": "/invocations", "oip": False}

    def conveyor(port: int, extra_env: dict[str, str] | None = None, args: list[str] | None = None) -> dict:
        return {"cmd": [str(bin_dir / "conveyor"), "serve", "--host", "127.0.0.1", "--port", str(port),
                        *(args or []), *os.environ.get("CONVEYOR_FLAGS", "").split()],
                "port": port, "ready": "/readyz", "path": "/invocations", "oip": False,
                "headers": {"Authorization": f"Bearer {key}"}, "env": extra_env or {}}

    servers = {
        "floor": floor("app", floor_port),
        "floor-orjson": floor("fast_app", fast_floor_port),
        "conveyor": conveyor(conveyor_port),
        # the same app on granian (Rust HTTP server) instead of uvicorn
        "conveyor-granian": conveyor(free_port(), args=["--server", "granian"]),
        # the same server with the prediction log encoded on a thread of the serving process (the old default)
        "conveyor-log-thread": conveyor(free_port(), {"CONVEYOR_SERVE_LOG_WRITER": "thread"}),
        **peer_servers(work),
        # the same server without its usage accounting (serving_usage): only when BENCH_SERVERS names it
        "conveyor-no-usage": conveyor(free_port(), {"CONVEYOR_SERVE_USAGE_INTERVAL_S": "0"}),
        # the same server calling scikit-learn's predict instead of the compiled one (serving/compiled.py)
        "conveyor-sklearn-predict": conveyor(free_port(), {"CONVEYOR_SERVE_COMPILED_PREDICT": "0"}),
    }
    wanted = os.environ.get("BENCH_SERVERS")
    if wanted:
        servers = {k: v for k, v in servers.items() if k in wanted.split(",") or k.startswith("floor")}
    else:
        servers.pop("conveyor-no-usage")
        servers.pop("conveyor-sklearn-predict")
    rows_list = [int(r) for r in os.environ.get("BENCH_ROWS", "1,100").split(",")]
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):          # servers alternate, so a noisy minute hurts both alike
        for name, spec in servers.items():
            run_env = env if "path_prefix" not in spec else {**env, "PATH": spec["path_prefix"] + os.pathsep + env["PATH"]}
            run_env = {**run_env, **spec.get("env", {})}
            proc = start(spec["cmd"], run_env, work / f"{name}.log")
            base_url = f"http://127.0.0.1:{spec['port']}"
            try:
                wait_ready(base_url + spec["ready"], proc)
                for rows in rows_list:
                    r = wrk(base_url + spec["path"], bodies(rows, spec["oip"]),
                            {"Content-Type": "application/json", **spec.get("headers", {})})
                    samples.setdefault((name, rows), []).append(r)
            finally:
                stop(proc)
    served_rows = sum(r["requests"] * rows for (name, rows), v in samples.items() if name.startswith("conveyor")
                      for r in v)
    results = {k: {m: float(np.mean([r[m] for r in v])) for m in v[0] if m != "requests"} for k, v in samples.items()}
    for (name, rows), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0] != "floor")):
        base, strict = results[("floor", rows)], results.get(("floor-orjson", rows))
        line = {"server": name, "rows": rows, "rounds": rounds, **{k: round(v, 3) for k, v in r.items()},
                "rps_ratio": round(r["rps"] / base["rps"], 3), "p99_ratio": round(r["p99_ms"] / base["p99_ms"], 3)}
        if strict:
            line |= {"rps_ratio_orjson_floor": round(r["rps"] / strict["rps"], 3),
                     "p99_ratio_orjson_floor": round(r["p99_ms"] / strict["p99_ms"], 3)}
        # the spread: the ratio to the floor measured in the same round, lowest and highest
        pairs = list(zip(samples[(name, rows)], samples[("floor", rows)]))
        per_round = [a["rps"] / b["rps"] for a, b in pairs]
        p99_round = [a["p99_ms"] / b["p99_ms"] for a, b in pairs]
        line |= {"rps_ratio_min": round(min(per_round), 3), "rps_ratio_max": round(max(per_round), 3),
                 "rps_ratio_median": round(float(np.median(per_round)), 3),
                 "p99_ratio_median": round(float(np.median(p99_round)), 3),
                 "rps_rounds": [round(r["rps"]) for r in samples[(name, rows)]],
                 "p99_ms_rounds": [round(r["p99_ms"], 1) for r in samples[(name, rows)]]}
        peer = results.get(("mlserver", rows))
        if peer and name != "mlserver":
            vs_peer = [a["rps"] / b["rps"] for a, b in zip(samples[(name, rows)], samples[("mlserver", rows)])]
            line |= {"rps_ratio_mlserver": round(r["rps"] / peer["rps"], 3),
                     "p99_ratio_mlserver": round(r["p99_ms"] / peer["p99_ms"], 3),
                     "rps_ratio_mlserver_median": round(float(np.median(vs_peer)), 3)}
        print(json.dumps(line))
    import pyarrow.parquet as pq

    logged = list((work / "home" / "artifacts" / "predictions").rglob("*.parquet"))
    print(json.dumps({"prediction_log_files": len(logged), "conveyor_rows_served": served_rows,
                      "prediction_log_rows": sum(pq.read_metadata(p).num_rows for p in logged)}))
    print(json.dumps(usage_overhead(model)))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
