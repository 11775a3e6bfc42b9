"""Bytes an attempt moved through the artifact store, counted where the store reads and writes.

A step attempt opens a tally (``tallying``) in its thread or process; the store adds to the open
one, if any. Nothing is counted outside an attempt, and counting costs one context lookup per I/O.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Tally:
    """Bytes read from and written to the artifact store."""

    read: int = 0
    written: int = 0


_open: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("conveyor_io_tally", default=None)


@contextlib.contextmanager
def tallying(tally: Tally) -> Iterator[Tally]:
    """Count the store's I/O of this context into ``tally`` (nested tallies: the innermost counts)."""
    token = _open.set(tally)
    try:
        yield tally
    finally:
        _open.reset(token)


def begin(tally: Tally) -> contextvars.Token[Tally | None]:
    """Open ``tally`` without a ``with`` block (the hot path of every step attempt); close it with ``end``."""
    return _open.set(tally)


def end(token: contextvars.Token[Tally | None]) -> None:
    _open.reset(token)


def add_read(n: int | None) -> None:
    tally = _open.get()
    if tally is not None and n:
        tally.read += n


def add_written(n: int | None) -> None:
    tally = _open.get()
    if tally is not None and n:
        tally.written += n
