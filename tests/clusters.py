"""Real distributed clusters for the tests: a two-node local Ray cluster and a Dask LocalCluster.

Both are started once per test session (a Ray head costs about 6 s and 550 MiB here) and bound to
loopback. Ray's nodes run in the foreground (``ray start --block``) in their own process groups,
so the teardown stops exactly this session's cluster, never another one on the same machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
SECOND_NODE_RESOURCE = "second_node"


@dataclass(frozen=True)
class RayCluster:
    """A running local Ray cluster: its address, and the custom resource only the second node has."""

    address: str
    temp_dir: Path
    second_node_resource: str = SECOND_NODE_RESOURCE


def _ray_bin() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("Ray is not installed in this environment; `make dev` installs it (extra `ray`).")
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


def _wait_for_nodes(address: str, count: int, procs: list[subprocess.Popen[bytes]],
                    log: Path, timeout: float = 300.0) -> None:
    """Wait until ``count`` nodes are alive, by asking the cluster from a short-lived driver."""
    probe = (
        "import ray, sys\n"
        f"ray.init(address={address!r}, _node_ip_address={LOOPBACK!r}, logging_level='ERROR')\n"
        "print(sum(1 for n in ray.nodes() if n['Alive']))\n"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"a Ray node exited with {proc.returncode} while starting; see {log}")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             timeout=180, check=False)
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines and int(lines[-1]) >= count:
            return
        time.sleep(0.5)
    pytest.fail(f"the local Ray cluster did not reach {count} nodes in {timeout:.0f} s; see {log}")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A head (2 CPUs) and a second node (1 CPU, custom resource ``second_node``) on loopback."""
    from tests.conftest import free_port

    ray = _ray_bin()
    temp_dir = Path(tempfile.mkdtemp(prefix="conveyor-ray-", dir="/tmp"))
    log = temp_dir / "nodes.log"
    port = free_port()
    address = f"{LOOPBACK}:{port}"
    common = ["--block", "--node-ip-address", LOOPBACK, "--disable-usage-stats"]
    # without token authentication: a token file left in ~/.ray by any local ray.init() would make `ray start`
    # enable it, while drivers given an explicit address do not send the token (Ray 2.60)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # the suite's own modules (tests.*) unpickle on workers whatever folder a task's runtime env makes current
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    env.pop("RAY_ADDRESS", None)
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as out:
        procs.append(subprocess.Popen(
            [ray, "start", "--head", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard=false", "--temp-dir", str(temp_dir),
             "--min-worker-port", "0", "--max-worker-port", "0", *common],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        try:
            _wait_for_nodes(address, 1, procs, log)
            procs.append(subprocess.Popen(
                [ray, "start", "--address", address, "--num-cpus", "1",
                 "--resources", f'{{"{SECOND_NODE_RESOURCE}": 1}}',
                 "--min-worker-port", "0", "--max-worker-port", "0", *common],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            _wait_for_nodes(address, 2, procs, log)
            yield RayCluster(address=address, temp_dir=temp_dir)
        finally:
            # a driver still connected when its raylet goes exits the whole process: this test session
            if "conveyor.executors.ray_connect" in sys.modules:
                sys.modules["conveyor.executors.ray_connect"].disconnect()
            for proc in reversed(procs):
                _stop(proc)
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[str]:
    """A Dask distributed LocalCluster of two single-threaded worker processes; yields its address."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host=LOOPBACK,
                           dashboard_address=None, silence_logs=40)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close(timeout=5)
