"""Servers the fault suite stops and starts under a running pipeline."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _as_postgres, free_port


class PostgresServer:
    """A PostgreSQL server of one test's own, so the test may stop, start and restart it."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.fail("PostgreSQL server binaries are missing; run scripts/system-packages.sh.")
        self.bin = Path(bins[-1])
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-pg-fault-"))
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.port = free_port()
        self.database = "postgres"
        self._ctl("initdb", "-D", str(self.folder / "db"), "-A", "trust", "-U", "conveyor", "--no-sync", ctl=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://conveyor@127.0.0.1:{self.port}/{self.database}"

    def running(self) -> bool:
        return subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.folder / "db"), "status"]),
                              capture_output=True).returncode == 0

    def _ctl(self, *args: str, ctl: bool = True) -> None:
        cmd = [str(self.bin / ("pg_ctl" if ctl else args[0])), *(args if ctl else args[1:])]
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("-D", str(self.folder / "db"), "-w", "-l", str(self.folder / "log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        """Stop at once: every session is cut, as in a crash of the server."""
        self._ctl("-D", str(self.folder / "db"), "-m", "immediate", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        subprocess.run(_as_postgres([str(server.bin / "pg_ctl"), "-D", str(server.folder / "db"), "-m",
                                     "immediate", "stop"]), capture_output=True)
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def postgres(postgres_cluster: PostgresServer) -> PostgresServer:
    """The module's server, running, with a new empty database that ``url`` names."""
    import psycopg

    if not postgres_cluster.running():       # a failed test may have left it stopped
        postgres_cluster.start()
    postgres_cluster.database = "postgres"
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_cluster.url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    postgres_cluster.database = name
    return postgres_cluster
