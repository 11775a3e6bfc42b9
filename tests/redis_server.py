"""A real ``redis-server`` for the tests: its own process on a free loopback port, nothing on disk."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import free_port


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running server: ``url`` is what a client is given (``redis://127.0.0.1:PORT/0``)."""

    url: str
    port: int


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start redis-server without persistence (no RDB snapshots, no AOF) and stop it on exit."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is missing; run scripts/system-packages.sh (make test does) "
                           "or apt-get install redis-server.")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="conveyor-redis-") as folder, \
            tempfile.NamedTemporaryFile(prefix="conveyor-redis-", suffix=".log") as log:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", folder, "--daemonize", "no", "--protected-mode", "yes"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}: "
                                       f"{open(log.name).read()[-2000:]}")
                time.sleep(0.05)
            yield RedisServer(f"redis://127.0.0.1:{port}/0", port)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
