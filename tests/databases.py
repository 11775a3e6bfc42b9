"""A real MariaDB server for the tests: started once per session on a free loopback port.

It gets its own data directory and socket under a temporary folder, so it never meets a system
server, and is stopped (then its folder removed) when the session ends. A test takes
``mariadb_url``: a new, empty database on it, reached by a user with a password (so tests can
check the password never shows).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MARIADB_USER = "conveyor"
MARIADB_PASSWORD = "mdb-Secret-9f3"   # a throwaway password for a server that lives one test session


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[str]:
    """A MariaDB server on 127.0.0.1; yields a base URL ``mysql+pymysql://user:password@host:port``."""
    from tests.conftest import free_port

    server, install = _binary("mariadbd", "mysqld"), _binary("mariadb-install-db", "mysql_install_db")
    if server is None or install is None:
        pytest.fail("MariaDB server binaries are missing; run scripts/system-packages.sh (make test does) "
                    "or apt-get install mariadb-server.")
    base = Path(tempfile.mkdtemp(prefix="conveyor-mdb-"))
    data, sock, port = base / "data", base / "mysqld.sock", free_port()
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([install, "--no-defaults", f"--datadir={data}", *as_root, "--auth-root-authentication-method=normal",
                    "--skip-test-db"], check=True, capture_output=True)
    log = open(base / "log", "wb")   # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                             "--bind-address=127.0.0.1", *as_root, "--skip-log-bin", "--skip-name-resolve",
                             "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=64M",
                             f"--pid-file={base / 'mysqld.pid'}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        import pymysql

        deadline = time.monotonic() + 90
        while True:
            try:
                conn = pymysql.connect(unix_socket=str(sock), user="root", autocommit=True)
                break
            except pymysql.err.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"MariaDB did not start: {(base / 'log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{MARIADB_USER}'@'%' IDENTIFIED BY '{MARIADB_PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{MARIADB_USER}'@'%'")
        conn.close()
        yield f"mysql+pymysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mariadb_url(mariadb_server: str) -> str:
    """A new, empty database on the session's MariaDB server."""
    import pymysql

    name = f"t_{uuid.uuid4().hex[:12]}"
    port = int(mariadb_server.rsplit(":", 1)[1])
    conn = pymysql.connect(host="127.0.0.1", port=port, user=MARIADB_USER, password=MARIADB_PASSWORD,
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"{mariadb_server}/{name}"
