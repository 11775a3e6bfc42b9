"""Data sources, one module per kind, found by the scheme or kind they handle.

``open_source("s3://bucket/events/*.parquet")`` or ``open_source("sql", url=..., query=...)``
returns a :class:`~conveyor.data.sources.base.Source`; ``read(...)`` is the same, read into one
Arrow table. Modules are imported only when their kind is used, so an optional driver is needed
only by the source that uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.data.sources.base import Source

# kind -> "module:factory"; a factory takes (location | None, **options) and returns a Source
KINDS: dict[str, str] = {}
# URL scheme -> kind, for locations given as one string
SCHEMES: dict[str, str] = {}


def register(kind: str, target: str, *, schemes: tuple[str, ...] = ()) -> None:
    """Add a source kind implemented by ``module:factory``, optionally reached by URL schemes."""
    KINDS[kind] = target
    for scheme in schemes:
        SCHEMES[scheme] = kind


def open_source(location_or_kind: str, **options: Any) -> Source:
    """The source for a kind name (``"sql"``) or a location whose scheme names the kind."""
    kind, location = _split(location_or_kind)
    target = KINDS.get(kind)
    if target is None:
        raise ConfigurationError(
            f"No data source handles '{location_or_kind}'. Known kinds: {', '.join(sorted(KINDS)) or 'none'}; "
            f"known URL schemes: {', '.join(sorted(SCHEMES)) or 'none'}.")
    module_name, _, factory = target.partition(":")
    return getattr(importlib.import_module(module_name), factory)(location, **options)


def read(location_or_kind: str, **options: Any) -> pa.Table:
    """Open a source and read every row into one Arrow table."""
    return open_source(location_or_kind, **options).read()


def _split(value: str) -> tuple[str, str | None]:
    if value in KINDS:
        return value, None
    scheme, sep, _ = value.partition("://")
    scheme = scheme if scheme in SCHEMES else scheme.split("+", 1)[0]   # postgresql+psycopg -> postgresql
    if sep and scheme in SCHEMES:
        return SCHEMES[scheme], value
    if not sep and "" in SCHEMES:   # a plain path
        return SCHEMES[""], value
    return value, value


__all__ = ["KINDS", "SCHEMES", "open_source", "read", "register"]

register("http", "conveyor.data.sources.http:open_http", schemes=("http", "https"))
register("redis-stream", "conveyor.data.sources.redis_streams:open_redis_stream", schemes=("redis", "rediss"))
register("sqs", "conveyor.data.sources.sqs:open_sqs", schemes=("sqs",))
register("mongo", "conveyor.data.sources.mongo:open_mongo", schemes=("mongodb", "mongodb+srv"))

register("dataset", "conveyor.data.datasets:open_dataset_source", schemes=("dataset",))
register("files", "conveyor.data.sources.files:open_files",
         schemes=("", "file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"))
register("sql", "conveyor.data.sources.sql:open_sql",
         schemes=("postgresql", "postgres", "mysql", "mariadb", "sqlite", "bigquery", "mssql", "oracle", "duckdb",
                  "snowflake", "redshift"))
