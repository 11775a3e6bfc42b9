"""Opening the metadata database: engine options, migrations, and error translation."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from conveyor.errors import ConfigurationError, StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0007_attempts_key"
SQLITE_BUSY_TIMEOUT_S = 30


log = logging.getLogger("conveyor.metadata")


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How patiently to reconnect to a database server that is down or restarting.

    Pooled connections are checked before use (``pool_pre_ping``), so a server restart between two
    operations costs one reconnect; while the server is down, each new connection is retried with
    a doubling, capped wait, and only then does the caller get ``StoreUnavailable``. A statement
    that was in flight when the server went away is not replayed: it fails, and the run it
    belonged to stays resumable.
    """

    retries: int = 4          # 0.25 + 0.5 + 1 + 2 s: a restart fits; a wrong URL fails within 4 s
    backoff_s: float = 0.25
    backoff_max_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """The wait before reconnect number ``attempt`` (1-based)."""
        return min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))


# Refusals that waiting does not cure: reconnecting would only delay the error.
_PERMANENT_CONNECT = ("authentication failed", "does not exist", "no password supplied", "role ")


def _retry_connects(engine: Engine, url: str, policy: Reconnect) -> None:
    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _rec: Any, cargs: Any, cparams: Any) -> Any:
        attempt = 0
        while True:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                attempt += 1
                if attempt > policy.retries or any(p in str(exc) for p in _PERMANENT_CONNECT):
                    raise
                delay = policy.delay(attempt)
                log.warning("Cannot connect to the metadata database %s (%s); retry %d of %d in %.2fs.",
                            redact(url), str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                            attempt, policy.retries, delay)
                time.sleep(delay)


def redact(url: str) -> str:
    """Hide the password in a database URL before it is shown or logged."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    import sqlite3
    import time

    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")   # first: the others may wait on locks
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        # Switching to WAL needs a moment of exclusive access, which another process migrating the
        # same fresh file may hold; once the file is in WAL mode (it stays so) this is a no-op.
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")   # WAL: durable across process crashes, fsync at checkpoint
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_db_engine(url: str, *, reconnect: Reconnect | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout so processes can share it.

    A database server (PostgreSQL) gets pre-pinged pooled connections and retried reconnects.
    """
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False,
                                                      "timeout": SQLITE_BUSY_TIMEOUT_S},
                                   pool_size=8, max_overflow=8)
            event.listen(engine, "connect", _sqlite_pragmas)
            # Take the write lock at BEGIN: a read that later turns into a write would deadlock.
            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            @event.listens_for(engine, "connect")
            def _no_pysqlite_tx(dbapi_conn: Any, _r: Any) -> None:
                dbapi_conn.isolation_level = None
            return engine
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        _retry_connects(engine, url, reconnect or Reconnect())
        return engine
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigurationError(
            f"Cannot use metadata URL {redact(url)}: {exc}. Set CONVEYOR_METADATA_URL to a SQLAlchemy URL "
            "such as sqlite:///path/metadata.db or postgresql+psycopg://user:pass@host/db "
            "(PostgreSQL needs `pip install conveyor[postgres]`)."
        ) from None


def translate(exc: BaseException, url: str) -> StoreUnavailable:
    """Turn a database driver error into a message that says what to do."""
    text_ = str(getattr(exc, "orig", exc))
    if "locked" in text_ or "busy" in text_:
        return StoreUnavailable(
            f"The metadata database {redact(url)} stayed locked for {SQLITE_BUSY_TIMEOUT_S}s by another "
            "process. Wait for it to finish, or use PostgreSQL (CONVEYOR_METADATA_URL) for heavy concurrency."
        )
    if "disk is full" in text_ or "No space left" in text_:
        return StoreUnavailable(
            f"The metadata database {redact(url)} could not be written: its disk is full. Free space there "
            "(or set CONVEYOR_METADATA_URL to a database with room), then resume an interrupted run with "
            "`conveyor runs resume RUN_ID`."
        )
    if "no such table" in text_ or "does not exist" in text_ and "relation" in text_:
        return StoreUnavailable(
            f"The metadata database {redact(url)} is not initialised or is from another version. "
            "Run `conveyor init` to create or migrate it."
        )
    return StoreUnavailable(
        f"Cannot reach the metadata database {redact(url)}: {text_.splitlines()[0] if text_ else exc!r}. "
        "Check that the server is running and CONVEYOR_METADATA_URL is right."
    )


@contextlib.contextmanager
def guarded(url: str) -> Iterator[None]:
    """Translate SQLAlchemy errors raised inside the block."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        raise translate(exc, url) from exc


_migrate_lock = threading.Lock()


def current_revision(conn: Connection) -> str | None:
    """The Alembic revision recorded in the database, or None."""
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        conn.rollback()
        return None


@contextlib.contextmanager
def _process_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations between processes: a file lock for SQLite, an advisory lock elsewhere."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        lock_path = Path(url.database).with_suffix(".migrate.lock")
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(72657365)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(72657365)"))
                conn.commit()
    else:
        yield


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (cheap when it already is)."""
    url = str(engine.url)
    with guarded(url):
        with engine.connect() as conn:
            if current_revision(conn) == HEAD:
                return
        with _migrate_lock, _process_lock(engine):
            with engine.connect() as conn:
                if current_revision(conn) == HEAD:
                    return
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
