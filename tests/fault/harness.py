"""What every fault trial does: start a real ``conveyor`` process, look into its stores, check them.

The checks are the suite's definition of "nothing lost":

- every artifact the metadata records has its bytes in the store, and they hash to the record;
- no record points into the store's temporary folder;
- a step that was recorded as completed before the fault never runs its body again;
- after ``conveyor runs resume`` the run succeeded and its final outputs are byte-identical
  (same content hashes) to those of a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO

PIPELINE = f"{Path(__file__).with_name('pipelines.py')}:faulty"
DONE = ("succeeded", "cached")


@dataclass
class Home:
    """One Conveyor home for one trial, with the files its pipeline writes."""

    root: Path

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.txt"

    @property
    def loaded(self) -> Path:
        return self.root / "loaded"

    @property
    def db(self) -> Path:
        return self.root / "home" / "metadata.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "CVFAULT_"))}
        env.update(CONVEYOR_HOME=str(self.root / "home"), CONVEYOR_INLINE_MAX_BYTES="16",
                   CONVEYOR_MAX_WORKERS="4", CVFAULT_LEDGER=str(self.ledger), CVFAULT_LOADED=str(self.loaded),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.update(extra)
        return env

    def ledger_counts(self) -> Counter[str]:
        return Counter(self.ledger.read_text().split()) if self.ledger.exists() else Counter()


def conveyor(home: Home, *args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI to completion."""
    return subprocess.run([sys.executable, "-m", "conveyor.cli.main", *args], env=env or home.env(), text=True,
                          capture_output=True, timeout=timeout, cwd=home.root)


def spawn_run(home: Home, *params: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``conveyor run`` on the fault pipeline in the background."""
    args = [sys.executable, "-m", "conveyor.cli.main", "run", PIPELINE]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=env or home.env(), text=True, cwd=home.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(predicate: Any, what: str, proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> None:
    """Poll a real condition (a file, a row, a port) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited before {what}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def query(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read the metadata database directly (not through the code under test)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def only_run(db: Path) -> sqlite3.Row | None:
    if not db.exists():
        return None
    rows = query(db, "SELECT * FROM runs")
    assert len(rows) <= 1
    return rows[0] if rows else None


def completed_steps(db: Path, run_id: str) -> set[str]:
    """Node names whose step record says their work is done."""
    return {r["name"] for r in query(db, "SELECT name FROM step_runs WHERE run_id=? AND status IN (?, ?)",
                                     run_id, *DONE)}


def check_artifacts(db: Path, artifact_root: str | None = None, *, read: Any = None) -> int:
    """Every recorded artifact is whole: bytes present, hash and size as recorded, never a temp path.

    ``read`` fetches the bytes of a URI (default: a local file). Returns how many were checked.
    """
    rows = query(db, "SELECT id, content_hash, size, uri FROM artifacts WHERE uri IS NOT NULL")
    for row in rows:
        uri = row["uri"]
        assert "/tmp/" not in uri.split("artifacts", 1)[-1], f"artifact {row['id']} points at a temp file: {uri}"
        data = read(uri) if read else Path(uri.removeprefix("file://")).read_bytes()
        assert len(data) == row["size"], f"artifact {uri}: {len(data)} bytes, {row['size']} recorded"
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == row["content_hash"], f"artifact {uri} is corrupt"
    return len(rows)


def check_objects(artifact_root: Path) -> tuple[int, int]:
    """Every object in the store is whole: its bytes hash to its name. (objects, leftover temp files)

    A write killed halfway must leave at most a file in ``tmp/`` (never referenced), never a
    partial object under ``objects/``.
    """
    objects = [p for p in (artifact_root / "objects").glob("*/*") if p.is_file()]
    for path in objects:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"object {path} is partial"
    tmp = artifact_root / "tmp"
    return len(objects), len(list(tmp.iterdir())) if tmp.exists() else 0


def final_outputs(db: Path, run_id: str) -> dict[str, str]:
    """``node/output`` -> content hash of the outputs the run ended with (the latest completed record)."""
    rows = query(db, """
        SELECT s.name AS node, l.name AS output, a.content_hash AS hash, s.ended_at AS ended
        FROM step_runs s JOIN lineage l ON l.step_run_id = s.id AND l.direction = 'output'
        JOIN artifacts a ON a.id = l.artifact_id
        WHERE s.run_id = ? AND s.status IN ('succeeded', 'cached') ORDER BY s.ended_at""", run_id)
    return {f"{r['node']}/{r['output']}": r["hash"] for r in rows}


def _warm_up() -> None:
    """Import what a run needs once, in this process, so forked children start warm."""
    import importlib

    for name in ("conveyor.runtime.client", "conveyor.cli.live", "conveyor.executors", "conveyor.store.artifacts",
                 "rich.live", "rich.table", "alembic.command"):
        importlib.import_module(name)
    global _COMMAND
    if _COMMAND is None:
        import typer.main

        from conveyor.cli.main import app

        _COMMAND = typer.main.get_command(app)


_COMMAND: Any = None


def fork_cli(home: Home, *argv: str, env: dict[str, str] | None = None) -> int:
    """Start the real CLI (``conveyor.cli.main.main``) in a forked child process; return its pid.

    The child is a real process that a real signal can kill, but it starts from this already
    warmed-up interpreter, so a trial costs milliseconds of start-up instead of a second of imports.
    """
    from conveyor.cli.main import main

    _warm_up()

    out = open(home.root / f"cli-{time.monotonic_ns()}.log", "wb")   # noqa: SIM115 (the child owns it)
    pid = os.fork()
    if pid:
        out.close()
        return pid
    code = 70
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = open(1, "w", closefd=False)   # noqa: SIM115 (pytest's capture objects are not ours)
        sys.stderr = open(2, "w", closefd=False)   # noqa: SIM115
        os.chdir(home.root)
        os.environ.clear()
        os.environ.update(env or home.env())
        os.environ["COLUMNS"] = "200"
        import typer.main

        typer.main.get_command = lambda _app: _COMMAND   # the command tree built once, before forking
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def exit_code(pid: int) -> int:
    """Wait for a forked child; its exit code, or minus the signal that ended it."""
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def child_output(home: Home) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(home.root.glob("cli-*.log")))


def first_connection(port: int) -> None:
    """Stand in for a dead server on its port until a client tries to connect, then hang up on it.

    An outage that is sure to be met: the client's first attempt fails, and what happens next
    (its retries, the real server coming back) is what the test watches.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        listener.settimeout(120)
        conn, _ = listener.accept()
        conn.close()
