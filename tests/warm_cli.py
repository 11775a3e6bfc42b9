"""``conveyor`` commands in real processes that start warm.

Each command is its own process, forked from a server process that has imported the CLI and the
libraries a command loads (SQLAlchemy, Alembic, rich, NumPy, pandas, scikit-learn) and has run
nothing else. The child then takes the command's environment, working folder, ``sys.argv`` and
``sys.path`` as ``python -m conveyor.cli.main ARGS`` would, runs the real ``main()`` and exits the
way it does; its exit code, stdout and stderr come back as a ``CompletedProcess``. A command thus
costs milliseconds of start-up instead of the second or two of imports that a cold interpreter
pays. ``TESTS_COLD_CLI=1`` runs the same commands from cold interpreters instead (to compare or
to rule the server out). Cold starts stay where the start itself is under test: the Ctrl-C test,
every tenth trial of the fault suite, the CI workflow's jobs, ``conveyor serve`` and the agent,
the exported tasks' ``step exec`` and ``tests/test_imports.py``.

Run as ``python -m tests.warm_cli`` it is the server: one JSON request a line on stdin, answered
by the child's pid and then its exit status, each on a line of stdout.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# besides Conveyor's own modules: what the commands and the tests' pipelines load
LIBRARIES = ("sqlalchemy", "sqlalchemy.dialects.sqlite", "alembic.command", "fsspec.implementations.local",
             "pydantic", "rich.live", "rich.table", "numpy", "pandas", "sklearn.linear_model")
# never preloaded: the distributed engines (threads, and their own start-up), migration scripts, entry points
NOT_PRELOADED = (".ray", ".dask", ".migrations", "__main__")


class WarmCli:
    """A client of one warm server; ``run`` is ``subprocess.run([python, -m, conveyor.cli.main, *args])``."""

    def __init__(self) -> None:
        self._server: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._owner = os.getpid()           # a forked copy of this process must not close the server
        self._files = Path(tempfile.mkdtemp(prefix="conveyor-warm-cli-"))

    def start(self) -> None:
        """Start the server (its imports take seconds) without waiting for it; ``run`` waits."""
        with self._lock:
            self._started()

    def _started(self) -> subprocess.Popen[str]:
        if self._server is None or self._server.poll() is not None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
            with open(self._files / "server.log", "ab") as log:
                self._server = subprocess.Popen([sys.executable, "-m", "tests.warm_cli"], cwd=REPO, env=env,
                                                text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        return self._server

    def run(self, args: Sequence[str], *, env: Mapping[str, str], cwd: Path | str, timeout: float = 120,
            input: str | None = None, script: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``conveyor ARGS``: ``main()`` of ``conveyor.cli.main``, or the installed entry ``script`` itself."""
        if os.environ.get("TESTS_COLD_CLI") == "1":     # the same commands from cold interpreters, to compare
            command = [str(script)] if script else [sys.executable, "-m", "conveyor.cli.main"]
            return subprocess.run([*command, *args], env=dict(env), cwd=cwd, input=input,
                                  stdin=None if input is not None else subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        with self._lock:
            server = self._started()
            stamp = f"{os.getpid()}-{time.monotonic_ns()}"
            out, err, stdin = (self._files / f"{stamp}.{n}" for n in ("out", "err", "in"))
            stdin.write_text(input or "")
            request = {"argv": list(args), "env": dict(env), "cwd": str(cwd), "stdout": str(out), "stderr": str(err),
                       "stdin": str(stdin) if input is not None else os.devnull, "script": str(script or "")}
            assert server.stdin is not None and server.stdout is not None
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            pid = int(self._line(server, 30, "to start the command"))
            try:
                status = self._line(server, timeout, f"{args[:2]} to finish")
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._line(server, 30, "the killed command to be reaped")
                raise subprocess.TimeoutExpired(["conveyor", *args], timeout, _read(out), _read(err)) from None
            completed = subprocess.CompletedProcess(["conveyor", *args], int(status), _read(out), _read(err))
            for path in (out, err, stdin):
                path.unlink(missing_ok=True)
            return completed

    def _line(self, server: subprocess.Popen[str], timeout: float, what: str) -> str:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], timeout)
        if not ready:
            raise subprocess.TimeoutExpired(["conveyor"], timeout)
        line = server.stdout.readline()
        if not line:
            log = _read(self._files / "server.log")[-3000:]
            raise AssertionError(f"the warm CLI server (tests/warm_cli.py) exited while waiting for {what}:\n{log}")
        return line.strip()

    def close(self) -> None:
        global _SHARED
        if os.getpid() != self._owner:
            return
        if _SHARED is self:
            _SHARED = None
        if self._server is not None:
            if self._server.stdin:
                self._server.stdin.close()
            try:
                self._server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._server.kill()
            self._server = None
        shutil.rmtree(self._files, ignore_errors=True)


_SHARED: WarmCli | None = None


def shared() -> WarmCli:
    """The session's client (the ``warm_cli`` fixture), for helpers that are not fixtures."""
    global _SHARED
    if _SHARED is None:
        _SHARED = WarmCli()
        atexit.register(_SHARED.close)       # if no test's fixture closed it
    return _SHARED


def run(args: Sequence[str], *, env: Mapping[str, str], cwd: Path | str, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` through the shared server."""
    return shared().run(args, env=env, cwd=cwd, timeout=timeout, input=input)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# --- the server ----------------------------------------------------------------------------------


def preload() -> None:
    """Import Conveyor's modules (but the distributed engines') and the usual libraries, so a fork starts warm.

    Only for a process that runs nothing else, as the server: forked from a test process, the same
    modules would carry whatever state earlier tests left in them (a pool whose threads the fork
    dropped, a configured exporter) into the child.
    """
    import importlib
    import pkgutil

    import conveyor

    names = [m.name for m in pkgutil.walk_packages(conveyor.__path__, "conveyor.")
             if not any(part in m.name for part in NOT_PRELOADED)]
    for name in [*names, *LIBRARIES]:
        try:
            importlib.import_module(name)
        except Exception:          # an optional dependency that is not installed: the command imports it itself
            pass


def _preload() -> None:
    preload()
    import typer.main

    from conveyor.cli.main import app

    command = typer.main.get_command(app)        # the command tree, built once: every child reuses it
    build = typer.main.get_command
    typer.main.get_command = lambda typer_app: command if typer_app is app else build(typer_app)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become ``python -m conveyor.cli.main ARGV`` and run it; never returns."""
    code = 70
    try:
        for fd, path, mode in ((0, request["stdin"], os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                               (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
            opened = os.open(path, mode, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import conveyor.cli.main as module

        script = request["script"]
        sys.argv = [script or module.__file__ or "conveyor", *request["argv"]]
        sys.path[:] = _path(request["env"].get("PYTHONPATH", ""), script)
        if script:                               # the installed entry point's own code
            import runpy

            runpy.run_path(script, run_name="__main__")
        else:
            module.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_SERVER_PATH = os.environ.get("PYTHONPATH", "").split(os.pathsep)


def _path(pythonpath: str, script: str = "") -> list[str]:
    """``sys.path`` as Python makes it with this PYTHONPATH: first the folder (``-m``) or the script's folder."""
    own = [p for p in pythonpath.split(os.pathsep) if p]
    rest = [p for p in sys.path[1:] if p not in _SERVER_PATH and p not in own]
    return [os.path.dirname(script) if script else os.getcwd(), *own, *rest]


def serve() -> None:
    _preload()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve()
