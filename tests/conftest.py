"""Fixtures shared by the whole suite: a fresh Conveyor home per test, and a real PostgreSQL."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing at an empty home under tmp_path; the working directory is tmp_path."""
    for key in list(os.environ):
        if key.startswith("CONVEYOR_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return load_settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[object]:
    from conveyor.runtime.client import Client

    c = Client(settings)
    yield c
    c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server started for this session on a free loopback port; yields a base URL."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL server binaries are missing; run scripts/system-packages.sh "
                    "(make test does) or apt-get install postgresql.")
    bin_dir = Path(bins[-1])
    data = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    data.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "conveyor",
                                 "--no-sync"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
                                 "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://conveyor@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


# The object-store emulators, one of each per session for every test module: a second instance
# would hand clients (and fsspec's cached filesystems) two endpoints for one scheme.
@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[object]:
    from tests.store import emulators

    with emulators.moto_s3() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[object]:
    from tests.store import emulators

    with emulators.gcs() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def azure_emulator() -> Iterator[object]:
    from tests.store import emulators

    with emulators.azurite() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A real redis-server for this session on a free loopback port, without persistence."""
    from tests.redis_server import redis_server as start

    with start() as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the warm CLI server now, if a collected test uses it: its imports overlap the first tests."""
    if any("warm_cli" in item.fixturenames or hasattr(getattr(item, "module", None), "warm_cli") for item in items):
        from tests.warm_cli import shared

        shared().start()


@pytest.fixture(scope="session")
def warm_cli() -> Iterator[object]:
    """Runs ``conveyor`` commands as real processes forked from a warm interpreter (``tests/warm_cli.py``)."""
    from tests.warm_cli import shared

    cli = shared()
    yield cli
    cli.close()


# A real `conveyor serve` for any test that needs one (imported last: it uses free_port above).
from tests.servers import serve_process  # noqa: E402,F401


# the session's distributed clusters (started only by the tests that ask for them)
from tests.clusters import dask_cluster, ray_cluster  # noqa: E402,F401


# a real MariaDB server (started only by the tests that ask for it)
from tests.databases import mariadb_server, mariadb_url  # noqa: E402,F401
