"""Overload: a real ``conveyor serve`` offered 5x the rate it sustains, open loop; prints JSON.

1. Sustainable rate: closed loop, 16 connections, every answer a 200 (``OVERLOAD_PROBE_S`` seconds).
2. Overload: requests scheduled at 5x that rate whatever the server does (open loop: a slow server
   is not given a break, as real clients do not give one), each on an idle connection or a new one
   (at most ``MAX_CONNECTIONS``). Latency is measured from the scheduled time, so client-side
   waiting counts too. Runs once with admission control at its default and once with it switched off
   (``CONVEYOR_SERVE_MAX_IN_FLIGHT`` huge), for the comparison.

Reports, per run: offered and achieved rate, answers by status, p50/p99 of the admitted (200)
answers, share of shed answers carrying Retry-After, and whether the server was still healthy.
The load generator is a minimal asyncio HTTP/1.1 client (httpx costs more per request than the
server it measures); ``soak.py`` uses it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 20
PROBE_S = float(os.environ.get("OVERLOAD_PROBE_S", "8"))
OVERLOAD_S = float(os.environ.get("OVERLOAD_S", "10"))
FACTOR = float(os.environ.get("OVERLOAD_FACTOR", "5"))
MAX_CONNECTIONS = int(os.environ.get("OVERLOAD_MAX_CONNECTIONS", "1000"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(work: Path) -> tuple[dict[str, str], str]:
    """A registered 20-feature logistic regression behind endpoint ``bench``; returns (env, request body)."""
    from sklearn.linear_model import LogisticRegression

    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, FEATURES))
    model = LogisticRegression().fit(X, X[:, 0] + rng.normal(size=5000) > 0)
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    env = {**os.environ, "CONVEYOR_HOME": str(work / "home")}
    client = Client(load_settings(env={"CONVEYOR_HOME": str(work / "home")}))
    client.registry.register("bench", model, data=X[:100])
    client.metadata.endpoints.create("bench", {"routes": [{"model": "bench:1", "weight": 100}]}, "bench")
    client.close()
    body = json.dumps({"instances": rng.normal(size=(1, FEATURES)).round(6).tolist()})
    return env, body


def start_server(env: dict[str, str], port: int, log: Path, extra_env: dict[str, str] | None = None,
                 flags: tuple[str, ...] = ()) -> subprocess.Popen:
    exe = str(Path(sys.executable).parent / "conveyor")
    proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), *flags],
                            env={**env, **(extra_env or {})}, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            start_new_session=True)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(x for x in fh if x.startswith("VmRSS:")).split()[1]) * 1024


class Load:
    """Keep-alive HTTP/1.1 connections to one server; results as (status, latency_s, has_retry_after)."""

    def __init__(self, port: int, path: str, body: str) -> None:
        self.port = port
        payload = body.encode()
        self.request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.results: list[tuple[int, float, bool]] = []
        self.refused = 0            # scheduled but not sent: every connection busy and the cap reached
        self.stale_retries = 0      # sent again on a new connection: the reused one had been closed

    async def _one(self, scheduled: float) -> None:
        reused = bool(self.idle)
        if await self._send(scheduled) is None and reused:
            # The server closes keep-alive connections idle for 5 s; a client retries those once, as
            # HTTP clients do. Counted, so that a server that drops live connections still shows.
            self.stale_retries += 1
            self.results.pop()
            await self._send(scheduled, fresh=True)

    async def _send(self, scheduled: float, fresh: bool = False) -> int | None:
        if self.idle and not fresh:
            reader, writer = self.idle.pop()
        elif self.open < MAX_CONNECTIONS:
            self.open += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.open -= 1
                self.results.append((-1, time.perf_counter() - scheduled, False))
                return 0
        else:
            self.refused += 1
            return 0
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, retry = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"retry-after":
                    retry = True
            await reader.readexactly(length)
            self.results.append((status, time.perf_counter() - scheduled, retry))
            self.idle.append((reader, writer))
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.open -= 1
            writer.close()
            self.results.append((-1, time.perf_counter() - scheduled, False))
            return None

    async def open_loop(self, rate: float, seconds: float) -> None:
        """Requests at ``rate`` a second for ``seconds``, each at its scheduled time."""
        start = time.perf_counter()
        tasks = set()
        i = 0
        while True:
            scheduled = start + i / rate
            if scheduled - start >= seconds:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(self._one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    async def closed_loop(self, connections: int, seconds: float) -> None:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                await self._one(time.perf_counter())
        await asyncio.gather(*(worker() for _ in range(connections)))

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def summary(load: Load, seconds: float, offered: float | None = None) -> dict[str, object]:
    statuses: dict[str, int] = {}
    for status, _, _ in load.results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = np.array([lat for status, lat, _ in load.results if status == 200]) * 1000
    shed = [r for r in load.results if r[0] in (429, 503)]
    out: dict[str, object] = {"seconds": seconds, "answers": statuses, "not_sent_all_connections_busy": load.refused,
                              "retried_on_a_closed_keep_alive_connection": load.stale_retries,
                              "admitted_per_s": round(len(ok) / seconds, 1)}
    if offered is not None:
        out["offered_per_s"] = round(offered, 1)
    if len(ok):
        out |= {"admitted_p50_ms": round(float(np.percentile(ok, 50)), 2),
                "admitted_p99_ms": round(float(np.percentile(ok, 99)), 2),
                "admitted_max_ms": round(float(ok.max()), 2)}
    if shed:
        shed_ms = np.array([lat for _, lat, _ in shed]) * 1000
        out |= {"shed_p99_ms": round(float(np.percentile(shed_ms, 99)), 2),
                "shed_with_retry_after": round(sum(1 for r in shed if r[2]) / len(shed), 3)}
    return out


def run(port: int, body: str, kind: str, **kw: float) -> Load:
    load = Load(port, "/invocations", body)

    async def go() -> None:
        if kind == "closed":
            await load.closed_loop(int(kw["connections"]), kw["seconds"])
        else:
            await load.open_loop(kw["rate"], kw["seconds"])
        load.close()
    asyncio.run(go())
    return load


def main() -> None:
    import httpx

    work = Path(tempfile.mkdtemp())
    env, body = setup(work)
    results = []
    for label, extra in (("admission on (default limit)", {}),
                         ("admission off", {"CONVEYOR_SERVE_MAX_IN_FLIGHT": "1000000"})):
        port = free_port()
        proc = start_server(env, port, work / "server.log", extra)
        try:
            run(port, body, "closed", connections=16, seconds=2)            # warm-up
            probe = run(port, body, "closed", connections=16, seconds=PROBE_S)
            sustainable = sum(1 for r in probe.results if r[0] == 200) / PROBE_S
            overload = run(port, body, "open", rate=sustainable * FACTOR, seconds=OVERLOAD_S)
            healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
            results.append({"benchmark": "overload", "run": label, "factor": FACTOR,
                            "sustainable_per_s": round(sustainable, 1),
                            "probe": summary(probe, PROBE_S),
                            "overload": summary(overload, OVERLOAD_S, sustainable * FACTOR),
                            "healthy_after": healthy and proc.poll() is None,
                            "server_rss_mb": round(rss_bytes(proc.pid) / 2**20, 1)})
        finally:
            stop_server(proc)
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
