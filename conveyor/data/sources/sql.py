"""SQL databases through SQLAlchemy URLs: a query or a table, parameters bound, rows as Arrow batches.

``SQLSource("postgresql+psycopg://reader@db/shop", query="SELECT * FROM orders WHERE region = :r",
params={"r": "EU"})`` binds ``:r`` as a parameter of the statement (values never enter the SQL
text, so a value cannot change what runs). Rows stream in batches through a server-side cursor
(SQLAlchemy ``stream_results`` / ``yield_per``), so a result larger than memory can feed a step.

PostgreSQL has a fast path: when ``adbc-driver-postgresql`` is installed (``conveyor[sql-fast]``)
the same compiled statement runs through ADBC, whose driver decodes PostgreSQL's binary wire
format straight into Arrow columns, with no Python object per value. ``fast=False`` turns it off.

Incremental reads name a column that grows (``incremental="updated_at"``): the source wraps the
statement in ``WHERE updated_at > :watermark ORDER BY updated_at`` and remembers the greatest
value it read.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError, ConveyorError, SourceReadError

if TYPE_CHECKING:
    import pyarrow as pa

WATERMARK_PARAM = "conveyor_watermark"
# URL query options that carry credentials (sslpassword, credentials_base64, access_token, ...)
_SECRET_QUERY = re.compile(r"pass|secret|token|credential|key", re.IGNORECASE)


def mask_url(url: Any) -> str:
    """A database URL with its password replaced by ``***`` (safe for logs, errors and lineage)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        hidden = {k: "***" for k in parsed.query if _SECRET_QUERY.search(k)}
        return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:   # not parseable: show only the scheme, never the rest
        scheme, sep, _ = str(url).partition("://")
        return f"{scheme}://***" if sep else "***"


def build_statement(*, query: str | None = None, table: str | None = None, schema: str | None = None,
                    columns: list[str] | None = None, params: dict[str, Any] | None = None,
                    incremental: str | None = None, watermark: Any = None, filter: Any = None) -> Any:
    """The SQLAlchemy statement a SQL source runs: pure, so any dialect can compile it.

    ``filter`` is the files source's filter language (text or tuples) as a WHERE clause whose
    literals are bound parameters.
    """
    import sqlalchemy as sa

    from conveyor.data.sources.filters import to_sql_clause

    where = to_sql_clause(filter, where=f"filter of {table or 'the query'}")

    if (query is None) == (table is None):
        raise ConfigurationError("A SQL source takes either query='SELECT ...' or table='name', not both and "
                                 "not neither.")
    if query is not None:
        inner = sa.text(query)
        if params:
            placeholders = list(inner.compile().params)
            unknown = sorted(set(params) - set(placeholders))
            if unknown:
                known = ", ".join(f":{k}" for k in placeholders) or "none"
                raise ConfigurationError(f"params {unknown} have no placeholder in the query (its placeholders: "
                                         f"{known}). Write :{unknown[0]} where the value goes, or drop it.")
            inner = inner.bindparams(*[sa.bindparam(k, v) for k, v in params.items()])
        if columns is None and incremental is None and where is None:
            return inner
        declared = list(dict.fromkeys([*(columns or []), *([incremental] if incremental else [])]))
        source = inner.columns(*[sa.column(c) for c in declared]).subquery("conveyor_q")
    else:
        if params:
            raise ConfigurationError(f"params={sorted(params)} were given for table {table!r}; parameters bind "
                                     "placeholders of a query. Use query='SELECT ... WHERE x = :x' instead.")
        names = list(dict.fromkeys([*(columns or []), *([incremental] if incremental else [])]))
        source = sa.table(table, *[sa.column(c) for c in names], schema=schema)
    picked = [source.c[c] for c in columns] if columns is not None else [sa.literal_column("*")]
    stmt = sa.select(*picked).select_from(source)
    if where is not None:
        stmt = stmt.where(where)
    if incremental is not None:
        column = source.c[incremental]
        if watermark is not None:
            stmt = stmt.where(column > sa.bindparam(WATERMARK_PARAM, watermark))
        stmt = stmt.order_by(column)
    return stmt


class SQLSource:
    """Rows of one query or table in a database reached by a SQLAlchemy URL."""

    kind = "sql"

    def __init__(self, url: str, *, query: str | None = None, table: str | None = None, schema: str | None = None,
                 columns: list[str] | None = None, params: dict[str, Any] | None = None,
                 filter: Any = None, incremental: str | None = None, batch_size: int = 65_536, fast: bool = True,
                 password_secret: str | None = None, engine_options: dict[str, Any] | None = None) -> None:
        if not url:
            raise ConfigurationError("A SQL source needs a SQLAlchemy URL, e.g. "
                                     "'postgresql+psycopg://reader@db.example/shop'.")
        self.url = str(url)
        self.query, self.table, self.schema = query, table, schema
        self.columns = list(columns) if columns is not None else None
        self.params = dict(params or {})
        self.filter = filter
        self.incremental = incremental
        self.batch_size = int(batch_size)
        self.fast = fast
        self.engine_options = dict(engine_options or {})
        # "env:NAME" or "file:PATH": the password stays out of the URL, so out of pipeline parameters
        self.password_secret = password_secret
        self._after: Any = None
        self._newest: Any = None
        self.path_used: str | None = None        # "adbc" or "sqlalchemy", once read
        build_statement(query=query, table=table, schema=schema, columns=self.columns, params=self.params,
                        incremental=incremental, filter=filter)   # refuse a wrong combination now, not at read time

    def connect_url(self) -> Any:
        """The URL to connect with: the password from ``password_secret`` when one is named."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if self.password_secret:
            from conveyor.config import read_secret

            url = url.set(password=read_secret(self.password_secret))
        return url

    def describe(self) -> str:
        what = f"table {'.'.join(p for p in (self.schema, self.table) if p)}" if self.table else \
            f"query {' '.join(self.query.split())[:200]!r}"   # type: ignore[union-attr]
        where = f" filter={self.filter!r}" if self.filter is not None else ""
        return f"sql {mask_url(self.url)} {what}{where}"

    def __repr__(self) -> str:
        return f"SQLSource({self.describe()!r})"

    # --- incremental --------------------------------------------------------------------------

    def resume_after(self, watermark: Any) -> None:
        """Read only rows whose incremental column is greater than ``watermark``."""
        if self.incremental is None:
            raise ConfigurationError(f"{self.describe()} has no incremental column; pass incremental='updated_at' "
                                     "(a column that grows with every new or changed row).")
        self._after = decode_watermark(watermark)

    def watermark(self) -> Any:
        """The greatest incremental value read so far (JSON-able), or the one it resumed after."""
        return encode_watermark(self._newest if self._newest is not None else self._after)

    # --- reading ------------------------------------------------------------------------------

    def statement(self) -> Any:
        return build_statement(query=self.query, table=self.table, schema=self.schema, columns=self.columns,
                               params=self.params, incremental=self.incremental, watermark=self._after,
                               filter=self.filter)

    def batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc

        stream = self._adbc_batches() if self._use_adbc() else self._sqlalchemy_batches()
        for batch in stream:
            if self.incremental is not None and batch.num_rows:
                if self.incremental not in batch.schema.names:
                    raise ConfigurationError(f"{self.describe()}: the incremental column {self.incremental!r} is not "
                                             f"in the result (columns: {', '.join(batch.schema.names)}).")
                top = pc.max(batch.column(self.incremental)).as_py()
                if top is not None and (self._newest is None or top > self._newest):
                    self._newest = top
            yield batch

    def read(self) -> pa.Table:
        import pyarrow as pa

        batches = list(self.batches())
        if not batches:
            return pa.table({})
        try:
            return pa.Table.from_batches(batches)
        except pa.ArrowInvalid:   # a column all NULL in one batch and typed in another
            return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")

    def _use_adbc(self) -> bool:
        if not self.fast or not self.url.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
            return False
        try:
            import adbc_driver_postgresql.dbapi  # noqa: F401
        except ImportError:
            return False
        return True

    def _sqlalchemy_batches(self) -> Iterator[pa.RecordBatch]:
        import sqlalchemy as sa

        self.path_used = "sqlalchemy"
        try:
            engine = sa.create_engine(self.connect_url(), **self.engine_options)
        except ConveyorError:
            raise
        except Exception as exc:
            raise self._error("cannot create a connection", exc) from None
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.batch_size).execute(
                    self.statement())
                names = list(result.keys())
                types: list[Any] = [None] * len(names)
                empty = True
                for rows in result.partitions(self.batch_size):
                    empty = False
                    yield _rows_to_batch(rows, names, types)
                if empty:   # no row: still the result's columns (untyped: there is no value to type them by)
                    yield _rows_to_batch([], names, types)
        except sa.exc.SQLAlchemyError as exc:
            raise self._error("the query failed", exc) from None
        finally:
            engine.dispose()

    def _adbc_batches(self) -> Iterator[pa.RecordBatch]:
        import adbc_driver_postgresql.dbapi as adbc
        import pyarrow as pa
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.engine.interfaces import BindTyping

        self.path_used = "adbc"
        dialect = postgresql.dialect(paramstyle="numeric_dollar")
        dialect.bind_typing = BindTyping.NONE   # ADBC types the parameters itself; no ::casts in the text
        # expanding IN lists become $n placeholders here, as the driver needs them in the text
        compiled = self.statement().compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        values = tuple(compiled.params[name] for name in (compiled.positiontup or ()))
        uri = self.connect_url().set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            with adbc.connect(uri) as conn, conn.cursor() as cursor:
                cursor.execute(str(compiled), values or None)
                reader = cursor.fetch_record_batch()
                empty = True
                for batch in reader:
                    empty = False
                    yield batch
                if empty:   # no row: the result's columns, typed by the database
                    yield pa.RecordBatch.from_pylist([], schema=reader.schema)
        except adbc.Error as exc:
            raise self._error("the query failed", exc) from None

    def _error(self, what: str, exc: Exception) -> SourceReadError:
        detail = getattr(exc, "orig", None) or exc
        text = " ".join(str(detail).split())[:500]
        for password in (*_secrets(self.url), self._secret_password()):
            if password:
                text = text.replace(str(password), "***")
        return SourceReadError(f"Data source {self.describe()}: {what}: {type(detail).__name__}: {text}. "
                               "Check the SQL (run it in the database's own client), the table and column names "
                               "and the URL's user and database.")


    def _secret_password(self) -> str | None:
        try:
            return self.connect_url().password if self.password_secret else None   # type: ignore[no-any-return]
        except ConveyorError:
            return None


def open_sql(location: str | None, **options: Any) -> SQLSource:
    """The registry's factory for ``sql``: a URL (positional or ``url=``) and the options of :class:`SQLSource`."""
    url = location or options.pop("url", None)
    if url is None:
        raise ConfigurationError("open_source('sql', ...) needs url='dialect+driver://user@host/db'.")
    return SQLSource(url, **options)


def encode_watermark(value: Any) -> Any:
    """A watermark value as JSON: numbers and strings as they are, times and decimals tagged."""
    if isinstance(value, _dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    return value


def decode_watermark(value: Any) -> Any:
    """The inverse of :func:`encode_watermark`."""
    if isinstance(value, dict) and "type" in value:
        kind, text = value["type"], value["value"]
        if kind == "datetime":
            return _dt.datetime.fromisoformat(text)
        if kind == "date":
            return _dt.date.fromisoformat(text)
        if kind == "decimal":
            return decimal.Decimal(text)
    return value


def _rows_to_batch(rows: list[Any], names: list[str], types: list[Any]) -> pa.RecordBatch:
    import pyarrow as pa

    arrays = []
    for i, values in enumerate(zip(*rows, strict=True) if rows else [() for _ in names]):
        known = types[i]
        try:
            array = pa.array(values, type=known) if known is not None else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            array = pa.array(values)   # the type widened (an int past 64 bits, a mixed column)
        if known is None and not pa.types.is_null(array.type):
            types[i] = array.type
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _secrets(url: str) -> list[str]:
    """The password and the credential-like query values of a URL: scrubbed from driver messages."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return []
    values = [str(parsed.password)] if parsed.password else []
    for key, value in parsed.query.items():
        if _SECRET_QUERY.search(key):
            values.extend([value] if isinstance(value, str) else list(value))
    return values


__all__ = ["SQLSource", "build_statement", "decode_watermark", "encode_watermark", "mask_url", "open_sql"]
