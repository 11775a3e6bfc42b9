"""The one Ray connection helper: which addresses name one cluster, and an address nobody answers at.

No cluster here: an unreachable address must fail in seconds with the fix, before ``ray.init``
(which would wait a minute or more for a head that is not there).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.errors import ConfigurationError
from conveyor.executors.ray_connect import gcs_endpoint, is_loopback, probe, same_cluster
from tests.conftest import REPO

PIPELINE = '''
import conveyor as cv

@cv.step
def one() -> int:
    return 1

@cv.pipeline
def tiny():
    one()
'''


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_addresses_name_one_cluster_by_port_on_the_same_host_or_both_on_loopback() -> None:
    assert gcs_endpoint("10.0.0.5:6379") == ("10.0.0.5", 6379) and gcs_endpoint("[::1]:6379") == ("::1", 6379)
    assert [gcs_endpoint(a) for a in ("auto", "local", "ray://head:10001", "head")] == [None] * 4
    assert same_cluster("127.0.0.1:6379", "localhost:6379") and same_cluster("127.0.0.1:6379", "127.0.1.1:6379")
    assert not same_cluster("127.0.0.1:6379", "127.0.0.1:6380") and not same_cluster("10.0.0.5:6379", "127.0.0.1:6379")
    from conveyor.executors.ray_connect import route_address

    here = route_address() or "127.0.0.1"   # what a head started on loopback reports as its address (Ray 2.60)
    assert same_cluster(f"{here}:6379", "127.0.0.1:6379") and not same_cluster(f"{here}:6379", "127.0.0.1:6380")
    assert is_loopback("::1") and is_loopback("127.3.2.1") and not is_loopback("10.0.0.5")


def test_a_closed_port_is_refused_by_the_probe_with_the_fix() -> None:
    port = _closed_port()
    with pytest.raises(ConfigurationError) as err:
        probe(f"127.0.0.1:{port}", ("127.0.0.1", port))
    message = str(err.value)
    assert f"No Ray cluster answers at 127.0.0.1:{port} (connection refused" in message
    assert f"`ray start --head --port {port}`" in message and "CONVEYOR_RAY_ADDRESS=local" in message
    with pytest.raises(ConfigurationError, match="unset RAY_ADDRESS and CONVEYOR_RAY_ADDRESS to use a local Ray"):
        probe(f"127.0.0.1:{port}", ("127.0.0.1", port), start_local=True)


def test_a_run_on_an_unreachable_ray_address_is_one_line_naming_it(tmp_path: Path) -> None:
    """The command a user types: exit 2, the address and the fix, no traceback."""
    (tmp_path / "flow.py").write_text(PIPELINE)
    address = f"127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "RAY_"))}
    env.update(CONVEYOR_HOME=str(tmp_path / "home"), RAY_ADDRESS=address, CONVEYOR_EXECUTOR="ray",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "conveyor.cli.main", "run", "flow.py:tiny"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"No Ray cluster answers at {address}" in proc.stderr and "ray start --head" in proc.stderr
    assert "Traceback" not in proc.stderr
