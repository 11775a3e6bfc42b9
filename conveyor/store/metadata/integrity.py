"""Constraint violations as ``Conflict``: a duplicate name is the user's clash, never a store outage.

SQLite says ``UNIQUE constraint failed: monitors.name``; PostgreSQL says ``duplicate key value
violates unique constraint "monitors_pkey"`` with ``DETAIL: Key (name)=(m1) already exists``. Both
become one message that names the kind of thing, the clashing value and what to do.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from conveyor.errors import Conflict

# table -> the noun a user knows it by
NOUNS = {
    "pipelines": "pipeline version", "runs": "run", "step_runs": "step run", "artifacts": "artifact",
    "environments": "environment", "models": "model", "model_versions": "model version",
    "model_aliases": "alias", "roles": "role grant", "endpoints": "endpoint", "api_keys": "API key",
    "monitors": "monitor", "webhooks": "webhook", "schedules": "schedule", "triggers": "trigger",
    "alerts": "alert", "firings": "firing", "seen_objects": "seen object",
}

_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: ([\w., ]+)")
_PG_DETAIL = re.compile(r"Key \((?P<cols>[^)]*)\)=\((?P<vals>.*)\) already exists")
_PG_TABLE = re.compile(r'(?:into|INTO|update|UPDATE)\s+"?(\w+)"?')
_INSERT_COLUMNS = re.compile(r"INSERT INTO \"?(\w+)\"? \(([^)]*)\)", re.IGNORECASE)


def _statement_values(exc: IntegrityError) -> tuple[str | None, dict[str, Any]]:
    """The table an INSERT wrote to and its column values, from the failed statement."""
    m = _INSERT_COLUMNS.search(exc.statement or "")
    if not m:
        return None, {}
    table = m.group(1)
    columns = [c.strip().strip('"') for c in m.group(2).split(",")]
    params = exc.params
    if isinstance(params, Mapping):
        return table, {c: params.get(c) for c in columns if c in params}
    if isinstance(params, Sequence) and not isinstance(params, str | bytes) and len(params) == len(columns):
        return table, dict(zip(columns, params, strict=True))
    return table, {}


def conflict_from(exc: IntegrityError) -> Conflict:
    """A ``Conflict`` naming the thing that clashed (table, columns, value) and how to go on."""
    text = str(getattr(exc, "orig", exc))
    table, values = _statement_values(exc)
    columns: list[str] = []
    shown: list[str] = []
    if m := _SQLITE_UNIQUE.search(text):
        qualified = [c.strip() for c in m.group(1).split(",")]
        table = table or qualified[0].split(".")[0]
        columns = [c.split(".")[-1] for c in qualified]
        shown = [repr(values[c]) for c in columns if c in values]
    elif m := _PG_DETAIL.search(text):
        columns = [c.strip() for c in m.group("cols").split(",")]
        shown = [repr(v.strip()) for v in m.group("vals").split(",")] if len(columns) > 1 else [repr(m.group("vals"))]
        if table is None and (tm := _PG_TABLE.search(exc.statement or "")):
            table = tm.group(1)
    else:
        what = NOUNS.get(table or "", table or "record")
        return Conflict(f"The {what} cannot be saved: it breaks a rule of the metadata store "
                        f"({text.splitlines()[0] if text else type(exc).__name__}). Check that what it refers to "
                        "exists and that its required fields are set.")
    noun = NOUNS.get(table or "", table or "record")
    article = "An" if noun[:1].lower() in "aeiou" else "A"
    key = ", ".join(f"{c}={v}" for c, v in zip(columns, shown, strict=False)) if shown else ", ".join(columns)
    if columns == ["name"] and shown:
        head = f"{article} {noun} named {shown[0]} already exists"
    else:
        head = f"{article} {noun} with {key} already exists"
    return Conflict(f"{head} (unique {table}.{'+'.join(columns)}). Choose another name, or change or delete the "
                    f"existing {noun} first.")


@contextlib.contextmanager
def conflicts_named() -> Iterator[None]:
    """Turn a constraint violation raised inside the block into a ``Conflict``."""
    try:
        yield
    except IntegrityError as exc:
        raise conflict_from(exc) from None
