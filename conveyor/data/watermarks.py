"""Incremental reads: a source resumes after the watermark its pipeline reached last time.

Inside a run, the new watermark is staged with the run and counts only once the run succeeded
(:mod:`conveyor.store.metadata.watermarks`), so a failed run is read again by the next one. From
plain Python, :func:`incremental` commits it when the ``with`` block that consumed the rows ends
without an exception::

    with cv.data.incremental(cv.data.open_source("s3://bucket/events/"), pipeline="nightly") as events:
        load(events.read())          # raises: the watermark stays where it was
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conveyor.data.sources.base import Incremental, Source
from conveyor.errors import ConfigurationError

_lock = threading.Lock()
_stores: dict[str, Any] = {}


def watermark_key(source: Source, key: str | None) -> str:
    """The name a watermark is kept under: the one given, else the source's description."""
    return key or source.describe()


def require_incremental(source: Source) -> Incremental:
    """The source itself, checked to support watermarks."""
    if not isinstance(source, Incremental):
        raise ConfigurationError(f"{source.describe()} cannot read incrementally: a {source.kind} source has no "
                                 "watermark. Read it whole, or use a source kind that supports one.")
    return source


def metadata_for(url: str) -> Any:
    """One metadata store per URL in this process (step workers reuse it across steps)."""
    with _lock:
        store = _stores.get(url)
        if store is None:
            from conveyor.store.metadata import MetadataStore

            store = _stores[url] = MetadataStore(url)
        return store


def resume(source: Source, metadata: Any, pipeline: str, key: str) -> Any:
    """Point ``source`` after the watermark that counts for (pipeline, key); return that value."""
    current = metadata.watermarks.current(pipeline, key)
    value = None if current is None else current.value
    if value is not None:
        require_incremental(source).resume_after(value)
    return value


@contextmanager
def incremental(source: Source, *, pipeline: str, key: str | None = None, client: Any = None) -> Iterator[Source]:
    """Resume ``source`` after its stored watermark; commit the new one when the block succeeds.

    ``pipeline`` scopes the watermark (two pipelines reading one source keep their own);
    ``key`` names it (default: the source's description, which has no secrets).
    """
    require_incremental(source)
    owned = client is None
    if owned:
        from conveyor.runtime.client import Client

        client = Client()
    try:
        name = watermark_key(source, key)
        before = resume(source, client.metadata, pipeline, name)
        yield source
        after = source.watermark()   # type: ignore[attr-defined]
        if after is not None and after != before:
            client.metadata.watermarks.commit(pipeline, name, after)
    finally:
        if owned:
            client.close()


__all__ = ["incremental", "metadata_for", "require_incremental", "resume", "watermark_key"]
