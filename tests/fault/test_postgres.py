"""PostgreSQL stopped or restarted under a real run whose metadata lives there.

The run is held inside step ``big`` (its gate) while the server goes away, so the fault always
meets the engine's next metadata write: recording big's result. Checked: a restart between two
operations is absorbed (pooled connections are pinged and replaced); a server that is down for a
while is waited for with bounded, logged reconnects; one that stays down gives a clear
``StoreUnavailable`` (exit 5) and ``conveyor runs resume`` completes once it is back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.fault.conftest import PostgresServer
from tests.fault.harness import Home, conveyor, first_connection, spawn_run, wait_for

pytestmark = pytest.mark.slow


def _rows(server: PostgresServer, sql: str, *args: Any) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    dsn = server.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, row_factory=dict_row, connect_timeout=5) as conn:
        return conn.execute(sql, args).fetchall()


def _setup(tmp_path: Path, postgres: PostgresServer, **extra: str) -> tuple[Home, dict[str, str]]:
    home = Home(tmp_path)
    env = home.env(CONVEYOR_METADATA_URL=postgres.url, CVFAULT_GATE=str(tmp_path / "gate"), **extra)
    init = conveyor(home, "init", env=env)
    assert init.returncode == 0, init.stderr
    return home, env


def _held_in_big(home: Home, postgres: PostgresServer, proc: Any) -> str:
    """Wait until every step before big is recorded and big is holding its output; the run id."""
    def ready() -> bool:
        return "big" in home.ledger_counts() and bool(_rows(
            postgres, "SELECT 1 FROM step_runs WHERE name='fingerprint' AND status='succeeded'"))
    wait_for(ready, "the steps before big to finish", proc)
    (run,) = _rows(postgres, "SELECT id FROM runs")
    return run["id"]


def _whole(postgres: PostgresServer, run_id: str) -> None:
    """The run succeeded, with every output recorded and every artifact file matching its hash."""
    (run,) = _rows(postgres, "SELECT status FROM runs WHERE id=%s", run_id)
    assert run["status"] == "succeeded"
    rows = _rows(postgres, "SELECT uri, content_hash, size FROM artifacts WHERE run_id=%s AND uri IS NOT NULL",
                 run_id)
    assert len({r["content_hash"] for r in rows}) == 8
    for r in rows:
        data = Path(r["uri"].removeprefix("file://")).read_bytes()
        assert len(data) == r["size"] and f"sha256:{hashlib.sha256(data).hexdigest()}" == r["content_hash"]


def test_a_restart_between_operations_is_absorbed(tmp_path: Path, postgres: PostgresServer) -> None:
    home, env = _setup(tmp_path, postgres)
    proc = spawn_run(home, env=env)
    run_id = _held_in_big(home, postgres, proc)
    postgres.restart()                       # every pooled connection of the run is now dead
    (tmp_path / "gate").write_text("go")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    _whole(postgres, run_id)
    assert set(home.ledger_counts().values()) == {1}


def test_a_server_that_is_down_for_a_while_is_waited_for(tmp_path: Path, postgres: PostgresServer) -> None:
    home, env = _setup(tmp_path, postgres, CONVEYOR_METADATA_RETRIES="10", CONVEYOR_METADATA_BACKOFF_S="0.2")
    proc = spawn_run(home, env=env)
    run_id = _held_in_big(home, postgres, proc)
    postgres.stop()
    (tmp_path / "gate").write_text("go")
    first_connection(postgres.port)         # the run tried to reconnect and was cut off ...
    postgres.start()                         # ... so only a later, retried connection can succeed
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    _whole(postgres, run_id)
    assert set(home.ledger_counts().values()) == {1}


def test_a_server_that_stays_down_fails_clearly_and_the_run_resumes(tmp_path: Path,
                                                                   postgres: PostgresServer) -> None:
    home, env = _setup(tmp_path, postgres, CONVEYOR_METADATA_RETRIES="1", CONVEYOR_METADATA_BACKOFF_S="0.05")
    proc = spawn_run(home, env=env)
    run_id = _held_in_big(home, postgres, proc)
    postgres.stop()
    (tmp_path / "gate").write_text("go")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert f"Cannot reach the metadata database postgresql+psycopg://conveyor@127.0.0.1:{postgres.port}" in err
    assert "Check that the server is running" in err
    assert "Traceback" not in err and "psycopg.OperationalError" not in err
    postgres.start()
    result = conveyor(home, "runs", "resume", run_id, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    _whole(postgres, run_id)
    ledger = home.ledger_counts()
    assert ledger["big"] == 2 and ledger["summary"] == 1     # big's result was never recorded: it runs again
    assert all(ledger[n] == 1 for n in ("source", "chunk[0]", "join", "fingerprint"))
