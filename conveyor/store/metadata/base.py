"""What every repository shares: the engine, the URL and error translation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from conveyor.store.metadata.connection import guarded
from conveyor.store.metadata.integrity import conflicts_named


def new_id() -> str:
    """A new random identifier (16 hex characters)."""
    return uuid.uuid4().hex[:16]


def now() -> float:
    """Current time as UTC epoch seconds (what every timestamp column holds)."""
    return time.time()


class Repository:
    """Base of the per-entity repositories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = str(engine.url)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success; a constraint violation becomes Conflict, other driver
        errors StoreUnavailable."""
        with guarded(self.url), conflicts_named(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries."""
        with guarded(self.url), conflicts_named(), self.engine.connect() as conn:
            yield conn
