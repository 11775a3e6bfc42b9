"""Where studies live: Optuna's RDB storage on Conveyor's own metadata database.

Optuna's tables (``studies``, ``trials``, ``trial_params``, …) sit beside Conveyor's in the same
database. Both projects keep an Alembic ``alembic_version`` table and there is one of it per
database, so Optuna's own schema check is skipped (its revision would be compared with
Conveyor's) and replaced by a check of the Optuna version that created the tables: a study made
by one major version of Optuna is refused by another with a message, never half-read.
"""

from __future__ import annotations

import threading
from typing import Any

from conveyor.errors import ConfigurationError

_lock = threading.Lock()
_storages: dict[str, Any] = {}


def study_storage(url: str) -> Any:
    """One ``RDBStorage`` per database URL in this process (its engine and pool are shared)."""
    with _lock:
        storage = _storages.get(url)
        if storage is None:
            storage = _storages[url] = _open(url)
        return storage


def _open(url: str) -> Any:
    import optuna
    from optuna.storages import RDBStorage

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several trial processes write the same file: wait for the lock instead of failing at once
        kwargs = {"connect_args": {"timeout": 60}, "pool_size": 1, "max_overflow": 0}
    else:
        kwargs = {"pool_pre_ping": True}
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(3):
        try:
            storage = RDBStorage(url, engine_kwargs=kwargs, skip_compatibility_check=True)
            break
        except ImportError as exc:
            raise ConfigurationError(f"The study storage at {_safe(url)} needs a database driver: {exc}. "
                                     "Install conveyor[postgres] for PostgreSQL.") from None
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            # two processes creating the study tables at once: the loser finds them made; open again
            if "already exists" not in str(exc) and "duplicate" not in str(exc).lower() or attempt == 2:
                raise
    _check_version(storage, optuna.__version__, url)
    if url.startswith("sqlite"):
        _commit_like_the_metadata_store(storage)
    return storage


def _commit_like_the_metadata_store(storage: Any) -> None:
    """The study's connections commit as the metadata store's do: in WAL mode, ``synchronous=NORMAL``.

    SQLite's default (FULL) syncs the log to disk at every commit, and a study commits several times
    per trial; NORMAL syncs at checkpoints, which survives a crashed process (what resuming a killed
    study needs), as the metadata store's own connections to the same file do.
    """
    from sqlalchemy import event

    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()   # the connection made while opening was made without it


def _check_version(storage: Any, installed: str, url: str) -> None:
    from optuna.storages._rdb import models   # the table model; Optuna has no public reader of it

    with storage.scoped_session() as session:
        info = models.VersionInfoModel.find(session)
        made_by = info.library_version if info is not None else installed
    if made_by.split(".")[0] != installed.split(".")[0]:
        raise ConfigurationError(
            f"The studies in {_safe(url)} were created by Optuna {made_by}, and Optuna {installed} is installed. "
            f"Install optuna=={made_by.split('.')[0]}.* to read them, or use another metadata database.")


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:   # noqa: BLE001 - a message must not fail on an odd URL
        return url.split("@")[-1]
