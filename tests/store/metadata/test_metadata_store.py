"""The metadata store on SQLite and PostgreSQL: migrations, runs, errors that say what to do."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from conveyor.errors import ConfigurationError, NotFound, StoreUnavailable
from conveyor.runtime.client import Client
from conveyor.store.metadata import MetadataStore
from conveyor.store.metadata.connection import HEAD
from conveyor.store.metadata.records import StepOutcome
from tests.runtime import pipelines as p

TABLES = {"pipelines", "runs", "run_events", "step_runs", "artifacts", "lineage", "metrics", "params",
          "environments", "alembic_version"}


def test_sqlite_store_is_migrated_and_in_wal_mode(settings) -> None:
    store = MetadataStore(settings.metadata_url)
    assert TABLES <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()


def test_run_records_pipeline_version_environment_and_git(client) -> None:
    run = p.chain.run(n=2, client=client)
    rec = run.record
    assert rec.pipeline_name == "chain" and rec.pipeline_ref == "tests.runtime.pipelines:chain"
    env = client.metadata.runs.environment(rec.environment_hash)
    assert env["python"].count(".") == 2 and "sqlalchemy" in env["packages"]
    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    assert rec.git_commit == (head.stdout.strip() if head.returncode == 0 else None)   # the pipeline's checkout
    pid1, v1 = client.metadata.runs.ensure_pipeline("chain", "other-code", None)
    assert v1 == 2   # a new code hash is a new pipeline version


def test_unknown_run_and_prefix_lookup(client) -> None:
    run = p.chain.run(n=1, client=client)
    assert client.get_run(run.id[:8]).id == run.id
    with pytest.raises(NotFound, match="No run 'ffffffff'"):
        client.get_run("ffffffff")


def test_delete_run_removes_its_records(client) -> None:
    run = p.chain.run(n=2, client=client)
    client.delete_run(run.id)
    with pytest.raises(NotFound):
        client.get_run(run.id)
    assert client.metadata.steps.for_run(run.id) == []


def test_locked_database_is_reported_clearly(settings, monkeypatch) -> None:
    import conveyor.store.metadata.connection as conn_mod

    monkeypatch.setattr(conn_mod, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    store = MetadataStore(settings.metadata_url)
    path = settings.metadata_url.split("///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another process holding the write lock
    try:
        with pytest.raises(StoreUnavailable, match="stayed locked"):
            store.runs.create(kind="pipeline", pipeline_name="x")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.runs.list() == []      # nothing half-written
    store.close()


def test_unreachable_database_error_hides_the_password() -> None:
    from tests.conftest import free_port

    url = f"postgresql+psycopg://user:s3cret@127.0.0.1:{free_port()}/db?connect_timeout=2"
    with pytest.raises(StoreUnavailable) as err:
        MetadataStore(url)
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    assert "Check that the server is running" in str(err.value)


def test_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="CONVEYOR_METADATA_URL"):
        MetadataStore("nosuchdialect://x")


@pytest.mark.postgres
def test_pipeline_runs_on_postgresql(postgres_url, settings, tmp_path) -> None:
    client = Client(settings.with_overrides(metadata_url=postgres_url))
    run = p.fanout.run(n=3, client=client)
    assert run.output("total") == 10
    again = p.fanout.run(n=3, client=client)
    assert all(s.cache_hit for s in again.steps.values() if s.status != "skipped")
    assert len(client.list_runs()) == 2
    client.close()


@pytest.mark.postgres
def test_concurrent_first_open_on_postgresql_migrates_once(postgres_url) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            MetadataStore(postgres_url).close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = MetadataStore(postgres_url)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    store.close()


def test_head_constant_matches_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from conveyor.store.metadata.connection import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


def test_upgrade_from_the_first_revision_keeps_data(tmp_path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from conveyor.store.metadata.connection import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO runs (id, kind, status, created_at) VALUES ('old', 'tracking', 'succeeded', 1)"))
    store = MetadataStore(url)
    assert store.runs.get("old").status == "succeeded"
    assert "model_versions" in inspect(store.engine).get_table_names()
    store.close()


def test_migrations_build_exactly_the_schema_the_code_declares(settings) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from conveyor.store.metadata import tables

    store = MetadataStore(settings.metadata_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    store.close()
    assert [d for d in diff if d[0] in ("add_table", "remove_table", "add_column", "remove_column")] == []


def _store_at_0006_with_attempts(url: str) -> None:
    """A store migrated to 0006 (attempts with an id and two indexes) holding a step run's two attempts."""
    from sqlalchemy import create_engine

    _migrate(url, "0006_resources")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id, kind, status, created_at) VALUES ('old', 'pipeline', 'succeeded', 1)"))
        conn.execute(text("INSERT INTO step_runs (id, run_id, name, step, status, attempts, cache_hit, started_at) "
                          "VALUES ('s1', 'old', 'train', 'train', 'succeeded', 2, false, 1)"))
        conn.execute(text("INSERT INTO step_attempts (step_run_id, run_id, attempt, status, executor, started_at, "
                          "wall_s, cpu_s) VALUES ('s1', 'old', 1, 'failed', 'thread', 1, 0.5, 0.25), "
                          "('s1', 'old', 2, 'completed', 'thread', 2, 1.5, 1.25)"))
    engine.dispose()


def _upgraded_store_keeps_attempts(url: str) -> None:
    from sqlalchemy import create_engine

    from conveyor.cost.usage import step_usage

    _store_at_0006_with_attempts(url)
    store = MetadataStore(url)   # migrates to the head
    got = [(a["name"], a["attempt"], a["status"], a["wall_s"], a["cpu_s"]) for a in store.steps.attempts("old")]
    assert got == [("train", 1, "failed", 0.5, 0.25), ("train", 2, "completed", 1.5, 1.25)]
    assert sorted(u.cpu_s for u in step_usage(store, run_ids=["old"])) == [0.25, 1.25]
    store.steps.add_attempts("s1", "old", [dict(attempt=3, status="completed", executor="thread", started_at=3.0,
                                                wall_s=1.0, cpu_s=0.75)], attempts=3, preemptions=1)
    assert [a["attempt"] for a in store.steps.attempts("old")] == [1, 2, 3]
    assert {i["name"] for i in inspect(store.engine).get_indexes("step_attempts")} == set()
    sid = store.steps.start("old", "score", "score", cache_key=None, code_hash=None)
    store.steps.finish(sid, "old", StepOutcome(status="succeeded", attempts=1, attempt_rows=[_ATTEMPT]))
    store.close()
    _migrate(url, "0006_resources", down=True)   # and back: the rows get ids again, then keys
    engine = create_engine(url)
    with engine.connect() as conn:   # the attempt kept on its step run is a row again
        assert conn.execute(text("SELECT count(*) FROM step_attempts WHERE step_run_id = :s"), {"s": sid}).scalar() == 1
    engine.dispose()
    _migrate(url, "head")
    store = MetadataStore(url)
    assert [(a["name"], a["attempt"]) for a in store.steps.attempts("old")] == [
        ("train", 1), ("train", 2), ("train", 3), ("score", 1)]
    store.close()


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from conveyor.store.metadata.connection import MIGRATIONS

    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


def test_upgrade_to_keyed_attempts_keeps_their_rows(tmp_path) -> None:
    _upgraded_store_keeps_attempts(f"sqlite:///{tmp_path / 'old.db'}")
    with sqlite3.connect(tmp_path / "old.db") as conn:   # one B-tree: the primary key's, no rowid
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'step_attempts'").fetchone()[0]
    assert "WITHOUT ROWID" in sql


@pytest.mark.postgres
def test_upgrade_to_keyed_attempts_keeps_their_rows_on_postgresql(postgres_url) -> None:
    _upgraded_store_keeps_attempts(postgres_url)


_ATTEMPT = dict(attempt=1, status="completed", executor="thread", host="h", started_at=5.0, ended_at=6.5, wall_s=1.5,
                cpu_s=1.25, peak_rss_bytes=2**20, bytes_read=10, bytes_written=20, gpu_s=None, gpu_peak_bytes=None,
                error=None)


def _attempts_kept_where_they_are_cheapest(url: str) -> None:
    from conveyor.cost.usage import step_usage

    store = MetadataStore(url)
    run = store.runs.create(kind="pipeline", pipeline_name="p")
    once = store.steps.start(run, "once", "once", cache_key=None, code_hash=None)
    store.steps.finish(once, run, StepOutcome(status="succeeded", attempts=1, attempt_rows=[_ATTEMPT]))
    retried = store.steps.start(run, "retried", "retried", cache_key=None, code_hash=None)
    store.steps.finish(retried, run, StepOutcome(status="succeeded", attempts=2, attempt_rows=[
        dict(_ATTEMPT, status="failed", error="boom", started_at=7.0), dict(_ATTEMPT, attempt=2, started_at=8.0)]))
    with store.engine.connect() as conn:   # the first step run's only attempt is on its row, not in step_attempts
        rows = conn.execute(text("SELECT step_run_id, attempt FROM step_attempts")).all()
    assert sorted(tuple(r) for r in rows) == [(retried, 1), (retried, 2)]
    got = store.steps.attempts(run)
    assert [(a["name"], a["attempt"], a["status"], a["error"]) for a in got] == [
        ("once", 1, "completed", None), ("retried", 1, "failed", "boom"), ("retried", 2, "completed", None)]
    assert {k: got[0][k] for k in _ATTEMPT} == _ATTEMPT and got[0]["step_run_id"] == once
    usage = sorted((u.step, u.started_at, u.cpu_s, u.measured) for u in step_usage(store, run_ids=[run]))
    assert usage == [("once", 5.0, 1.25, True), ("retried", 7.0, 1.25, True), ("retried", 8.0, 1.25, True)]
    store.close()


def test_a_first_time_success_is_kept_on_its_step_run_and_retries_in_step_attempts(tmp_path) -> None:
    _attempts_kept_where_they_are_cheapest(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_a_first_time_success_is_kept_on_its_step_run_on_postgresql(postgres_url) -> None:
    _attempts_kept_where_they_are_cheapest(postgres_url)
