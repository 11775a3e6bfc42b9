"""MongoDB collections: a filter, a projection and a batch size through pymongo, as Arrow batches.

``open_source("mongodb://host:27017/shop", collection="orders", filter={"status": "paid"},
projection={"_id": 0, "total": 1})`` streams the cursor in batches of ``batch_size`` documents
(the server's batch size too). ``ObjectId`` values become their 24-character hex strings; nested
documents become structs and arrays lists. A password goes in ``password_env``, never in the URL
that pipelines store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.errors import ConfigurationError, SourceReadError

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(slots=True)
class MongoSource:
    """One collection, read with ``find(filter, projection)``; ``client`` takes an open
    ``MongoClient`` (or one that behaves like it) instead of connecting to ``url``."""

    url: str
    collection: str
    database: str | None = None          # default: the URL's path (mongodb://host/DB)
    filter: dict[str, Any] = field(default_factory=dict)
    projection: dict[str, Any] | list[str] | None = None
    sort: list[tuple[str, int]] | None = None
    limit: int = 0
    batch_size: int = 10_000
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = 30.0
    client: Any = field(default=None, repr=False)
    kind: str = field(default="mongo", init=False)

    def __post_init__(self) -> None:
        if urlsplit(self.url).password:
            raise ConfigurationError(f"{self.describe()}: the URL carries a password, which would be stored with the "
                                     "pipeline and shown in logs. Remove it and pass password_env='NAME'.")
        if not self.collection:
            raise ConfigurationError(f"{self.describe()}: name the collection: collection='orders'.")
        if not self._database():
            raise ConfigurationError(f"{self.describe()}: name the database, in the URL (mongodb://host/DB) "
                                     "or as database='DB'.")
        if self.batch_size < 1:
            raise ConfigurationError(f"{self.describe()}: batch_size must be at least 1.")

    def _database(self) -> str:
        return self.database or urlsplit(self.url).path.strip("/")

    def describe(self) -> str:
        """Host, database and collection, without user name or password."""
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        where = urlunsplit((parts.scheme, host, "", "", ""))
        return f"mongo {where}/{self._database()}.{self.collection}"

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The matching documents, ``batch_size`` to a batch."""
        import pyarrow as pa

        errors = _errors()
        collection = self._connect()[self._database()][self.collection]
        try:
            cursor = collection.find(self.filter, self.projection, batch_size=self.batch_size, limit=self.limit)
            if self.sort:
                cursor = cursor.sort(self.sort)
            chunk: list[dict[str, Any]] = []
            for document in cursor:
                chunk.append(_plain(document))
                if len(chunk) == self.batch_size:
                    yield self._batch(pa, chunk)
                    chunk = []
            if chunk:
                yield self._batch(pa, chunk)
        except errors as exc:
            raise SourceReadError(f"{self.describe()}: the query failed: {exc}. Check the filter {self.filter!r}, the "
                                  "projection, the server and the credentials.") from None

    def read(self) -> pa.Table:
        """Every matching document as one table; a field missing from some documents is null there."""
        import pyarrow as pa

        tables = [pa.Table.from_batches([b]) for b in self.batches()]
        return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})

    def _connect(self) -> Any:
        if self.client is None:
            try:
                import pymongo
            except ImportError:
                raise ConfigurationError("Reading MongoDB needs pymongo: pip install 'conveyor[mongo]'.") from None
            from conveyor.config import read_secret

            auth = {}
            if self.username_env:
                auth["username"] = read_secret(f"env:{self.username_env}")
            if self.password_env:
                auth["password"] = read_secret(f"env:{self.password_env}")
            self.client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=int(self.timeout * 1000), **auth)
        return self.client

    def _batch(self, pa: Any, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        try:
            return pa.RecordBatch.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceReadError(f"{self.describe()}: the documents do not form a table ({exc}). Project the fields "
                                  "you need (projection=), or give each field one type.") from None


def _errors() -> tuple[type[BaseException], ...]:
    try:
        from pymongo.errors import PyMongoError
    except ImportError:
        return ()
    found: tuple[type[BaseException], ...] = (PyMongoError,)
    try:   # mongomock raises its own errors (tests without a server)
        from mongomock import OperationFailure
        found += (OperationFailure,)
    except ImportError:
        pass
    return found


def _plain(value: Any) -> Any:
    """BSON-only types as Arrow-friendly ones: ObjectId as hex text, Decimal128 as Decimal."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    name = type(value).__name__
    if name == "ObjectId":
        return str(value)
    if name == "Decimal128":
        return value.to_decimal()
    return value


def open_mongo(location: str | None, **options: Any) -> MongoSource:
    """The registry's factory: ``open_source("mongodb://host/DB", collection=...)``."""
    url = options.pop("url", None) or location
    if not url or "://" not in url:
        raise ConfigurationError("A MongoDB source needs a URL: open_source('mongodb://host:27017/DB', "
                                 "collection='NAME').")
    try:
        return MongoSource(url=url, **{"collection": "", **options})
    except TypeError as exc:
        raise ConfigurationError(f"MongoDB source: {exc}. See docs/data.md for its options.") from None
