"""Redis Streams read as micro-batches through a consumer group, acknowledged after success.

``open_source("redis://host:6379/0?stream=events&group=train")`` reads, as the consumer
``consumer`` of ``group`` (created at ``start`` when missing), first what was delivered to that
consumer before and never acknowledged (a failed run's messages), then entries older than
``claim_idle`` seconds that other consumers of the group left pending (``XAUTOCLAIM``), then new
entries (``XREADGROUP ... >``), until ``max_records`` entries or ``max_wait`` seconds without a
new one. ``ack()`` is ``XACK`` of everything read; ``nack()`` leaves it pending, so the next read
delivers it again. Inside a step this happens by itself: ack when the step's outputs are stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from conveyor.data.sources.base import acknowledge_with_step
from conveyor.errors import ConfigurationError, SourceReadError

if TYPE_CHECKING:
    import pyarrow as pa

ID_COLUMN = "_id"


@dataclass(slots=True, repr=False)
class RedisStreamSource:
    """One stream of one Redis server, read by one consumer of a consumer group.

    Each entry is a row: ``_id`` (the entry id) and its fields as strings; with ``json_field``,
    that field holds a JSON object whose keys become the columns instead.
    """

    url: str
    stream: str
    group: str = "conveyor"
    consumer: str = "conveyor"
    start: str = "0"                  # where a new group begins: "0" the whole stream, "$" only new entries
    max_records: int = 10_000
    max_wait: float = 1.0
    batch_size: int = 1_000
    json_field: str | None = None
    claim_idle: float | None = 300.0
    password_env: str | None = None
    kind: str = field(default="redis-stream", init=False)
    _delivered: dict[str, None] = field(default_factory=dict, init=False, repr=False)   # ordered set
    _client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.stream:
            raise ConfigurationError(f"Redis source {self._where()} needs a stream: add ?stream=NAME to the URL "
                                     "or pass stream='NAME'.")
        if self.max_records < 1 or self.batch_size < 1 or self.max_wait < 0:
            raise ConfigurationError(f"{self.describe()}: max_records and batch_size must be at least 1 and "
                                     "max_wait at least 0 seconds.")

    def _where(self) -> str:
        parts = urlsplit(self.url)
        netloc = f"{parts.hostname or ''}:{parts.port}" if parts.port else (parts.hostname or "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    def describe(self) -> str:
        """Server (without password), stream, group and consumer."""
        return f"redis-stream {self._where()} stream '{self.stream}' group '{self.group}' consumer '{self.consumer}'"

    # --- reading ------------------------------------------------------------------------------

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Micro-batches of at most ``batch_size`` entries, ``max_records`` in all."""
        client = self._connect()
        self._ensure_group(client)
        acknowledge_with_step(self)
        remaining = self.max_records
        for entries in self._redelivered(client):
            batch = self._take(client, entries[:remaining])
            remaining -= len(entries[:remaining])
            if batch is not None:
                yield batch
            if remaining <= 0:
                return
        deadline = time.monotonic() + self.max_wait
        while remaining > 0:
            left = deadline - time.monotonic()
            count = min(self.batch_size, remaining)
            reply = self._call(client.xreadgroup, self.group, self.consumer, {self.stream: ">"}, count=count)
            if not reply and left > 0:   # nothing waiting: wait for one, up to what is left of max_wait
                reply = self._call(client.xreadgroup, self.group, self.consumer, {self.stream: ">"}, count=count,
                                   block=max(1, int(left * 1000)))
            entries = reply[0][1] if reply else []
            if not entries:
                return
            remaining -= len(entries)
            batch = self._take(client, entries)
            if batch is not None:
                yield batch

    def read(self) -> pa.Table:
        """Every entry of this micro-batch as one table (``_id`` only when nothing was waiting)."""
        import pyarrow as pa

        tables = [pa.Table.from_batches([b]) for b in self.batches()]
        if not tables:
            return pa.table({ID_COLUMN: pa.array([], pa.string())})
        return pa.concat_tables(tables, promote_options="permissive")

    def waiting(self) -> int:
        """How many entries a read would deliver now (pending in the group plus not yet delivered),
        without delivering any: what an event trigger looks at."""
        client = self._connect()
        self._ensure_group(client)
        info = next((g for g in self._call(client.xinfo_groups, self.stream) if _text(g["name"]) == self.group), None)
        if info is None:
            return 0
        pending = int(info.get("pending") or 0)
        lag = info.get("lag")
        if lag is None:   # unknown after deletions: is there at least one undelivered entry?
            last = _text(info["last-delivered-id"])
            lag = len(self._call(client.xrange, self.stream, min=f"({last}", count=1))
        return pending + int(lag)

    # --- acknowledging ------------------------------------------------------------------------

    def ack(self) -> None:
        """Confirm every entry read so far (``XACK``); they are never delivered again."""
        ids, self._delivered = list(self._delivered), {}
        if ids:
            for start in range(0, len(ids), 1000):
                self._call(self._connect().xack, self.stream, self.group, *ids[start:start + 1000])

    def nack(self) -> None:
        """Give back every entry read so far: they stay pending and the next read delivers them again."""
        self._delivered = {}

    # --- helpers ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            try:
                import redis
            except ImportError:
                raise ConfigurationError("Reading Redis Streams needs the redis client: "
                                         "pip install 'conveyor[redis]'.") from None
            password = None
            if self.password_env:
                from conveyor.config import read_secret

                password = read_secret(f"env:{self.password_env}")
            self._client = redis.Redis.from_url(self.url, password=password, socket_timeout=max(30, self.max_wait + 10))
        return self._client

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return method(*args, **kwargs)
        except redis.AuthenticationError:
            raise SourceReadError(f"{self.describe()}: the server refused the password. Set the password in "
                                  f"{'$' + self.password_env if self.password_env else 'password_env='}.") from None
        except redis.ConnectionError as exc:
            raise SourceReadError(f"{self.describe()}: cannot reach the server ({exc}). Check the URL and that "
                                  "redis-server runs.") from None
        except redis.ResponseError as exc:
            raise SourceReadError(f"{self.describe()}: the server answered an error: {exc}. "
                                  "Check that the key is a stream.") from None

    def _ensure_group(self, client: Any) -> None:
        import redis

        try:
            client.xgroup_create(self.stream, self.group, id=self.start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise SourceReadError(f"{self.describe()}: the consumer group cannot be created: {exc}. "
                                      "Check that the key is a stream.") from None
        except redis.ConnectionError as exc:
            raise SourceReadError(f"{self.describe()}: cannot reach the server ({exc}). Check the URL and that "
                                  "redis-server runs.") from None

    def _redelivered(self, client: Any) -> Iterator[list[Any]]:
        """This consumer's own pending entries, then idle ones other consumers left behind."""
        last = "0"
        while True:
            reply = self._call(client.xreadgroup, self.group, self.consumer, {self.stream: last},
                               count=self.batch_size)
            entries = reply[0][1] if reply else []
            if not entries:
                break
            last = _text(entries[-1][0])
            yield entries
        if self.claim_idle is None:
            return
        cursor = "0-0"
        while True:
            reply = self._call(client.xautoclaim, self.stream, self.group, self.consumer,
                               int(self.claim_idle * 1000), start_id=cursor, count=self.batch_size)
            cursor, entries = _text(reply[0]), reply[1]
            if entries:
                yield entries
            if cursor == "0-0":
                return

    def _take(self, client: Any, entries: list[Any]) -> pa.RecordBatch | None:
        """Rows of the entries; ids of entries deleted while pending are acknowledged and dropped."""
        import pyarrow as pa

        rows, gone = [], []
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            if fields is None:        # trimmed from the stream while pending: nothing to deliver
                gone.append(entry_id)
                continue
            if entry_id in self._delivered:      # read again by a second read in this step: once is enough
                continue
            self._delivered[entry_id] = None
            rows.append(self._row(entry_id, fields))
        if gone:
            self._call(client.xack, self.stream, self.group, *gone)
        if not rows:
            return None
        try:
            return pa.RecordBatch.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceReadError(f"{self.describe()}: entries {rows[0][ID_COLUMN]}..{rows[-1][ID_COLUMN]} do not "
                                  f"form a table ({exc}). Give each field one type.") from None

    def _row(self, entry_id: str, fields: dict[Any, Any]) -> dict[str, Any]:
        values = {_text(k): _text(v) for k, v in fields.items()}
        if self.json_field is None:
            return {ID_COLUMN: entry_id, **values}
        raw = values.get(self.json_field)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SourceReadError(f"{self.describe()}: entry {entry_id} has no JSON object in field "
                                  f"'{self.json_field}' (fields: {', '.join(values)}). Fix the producer or set "
                                  "json_field= to the field that holds the JSON.")
        return {ID_COLUMN: entry_id, **data}


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


_OPTIONS = {"stream": str, "group": str, "consumer": str, "start": str, "max_records": int, "max_wait": float,
            "batch_size": int, "json_field": str, "claim_idle": float, "password_env": str}


def open_redis_stream(location: str | None, **options: Any) -> RedisStreamSource:
    """The registry's factory: options from the URL's query (``?stream=events&group=g``) and keywords."""
    url = options.pop("url", None) or location
    if not url or "://" not in url:
        raise ConfigurationError("A Redis stream source needs a URL: "
                                 "open_source('redis://host:6379/0?stream=events', group=...).")
    parts = urlsplit(url)
    from_query: dict[str, Any] = {}
    rest = []
    for key, value in parse_qsl(parts.query):
        if key in _OPTIONS:
            from_query[key] = _OPTIONS[key](value)
        else:
            rest.append((key, value))
    from urllib.parse import urlencode

    base = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    try:
        return RedisStreamSource(url=base, **{"stream": "", **from_query, **options})
    except TypeError as exc:
        raise ConfigurationError(f"Redis stream source: {exc}. See docs/data.md for its options.") from None
