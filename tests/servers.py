"""A real ``conveyor serve`` for the tests that need one: a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port


class ServeProcess:
    """``conveyor serve`` in its own process group; ``env`` is laid over this process's environment."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = str(Path(sys.executable).parent / "conveyor")
        # output to a file, not a pipe nobody reads: a full pipe would stall the server's logging
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
                                     env={**os.environ, **(env or {})}, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_healthy(self, timeout: float = 90) -> ServeProcess:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.output()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become healthy")

    def kill(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        self.log.close()

    def rss_bytes(self) -> int:
        """The server process's resident memory, from /proc."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            line = next(x for x in fh if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Start servers that are healthy when returned and stopped when the test ends."""
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> ServeProcess:
        p = ServeProcess(*args, env=env, cwd=cwd)
        started.append(p)
        return p.wait_healthy()

    yield start
    for p in started:
        p.stop()
