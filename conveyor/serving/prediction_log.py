"""The prediction log: requests buffered in memory, flushed off the request path to Parquet.

Layout: ``<root>/predictions/endpoint=<e>/date=<YYYY-MM-DD>/hour=<HH>/<uuid>.parquet``. One row per
predicted row: ``request_id``, ``row``, ``ts`` (UTC), ``endpoint``, ``model``, ``version``, ``shadow``,
``latency_ms``, ``prediction`` (or ``prediction_text`` for labels that are text) and one
``feature.<name>`` column per input. A full buffer drops whole requests and counts them rather
than slow requests down; stopping the log flushes what is buffered.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("conveyor.serving.prediction_log")


@dataclass(slots=True)
class _Entry:
    request_id: str
    ts: float
    endpoint: str
    model: str
    version: int
    shadow: bool
    latency_ms: float
    features: Any          # a serving Batch (columns built lazily) or a dict of column arrays
    prediction: np.ndarray

    def columns(self) -> dict[str, np.ndarray]:
        return self.features if isinstance(self.features, dict) else self.features.columns


class PredictionLog:
    """Collects predictions and writes them in batches from a background thread.

    Requests append to a buffer per (endpoint, hour); every ``chunk`` requests (or ``chunk_rows``
    rows, whichever comes first) the recording call turns that buffer into an Arrow table: a
    fraction of a millisecond, amortised over the chunk, and short enough not to show in p99.
    The writer thread then only concatenates and encodes Parquet, which runs without the GIL, so
    flushing never makes the event loop wait for a GIL switch interval.
    """

    def __init__(self, root: str, *, flush_rows: int = 50_000, interval_s: float = 2.0, max_rows: int = 500_000,
                 chunk: int = 64, chunk_rows: int = 1024, on_drop: Any = None, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec
        import pyarrow.parquet  # noqa: F401  (imported now, not on the first flush while serving)

        self.fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self.base = base.rstrip("/") + "/predictions"
        self.flush_rows, self.interval_s, self.max_rows = flush_rows, interval_s, max_rows
        self.chunk, self.chunk_rows = chunk, chunk_rows
        self._pending: dict[tuple[str, int], list[_Entry]] = {}   # (endpoint, hour) -> entries
        self._pending_rows: dict[tuple[str, int], int] = {}
        self._ready: dict[tuple[str, int], list[Any]] = {}        # (endpoint, hour) -> Arrow tables
        self._rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped_rows = 0
        self.written_files: list[str] = []
        self._on_drop = on_drop or (lambda n: None)
        self._warm_up()
        self._thread = threading.Thread(target=self._run, name="conveyor-prediction-log", daemon=True)
        self._thread.start()

    @staticmethod
    def _warm_up() -> None:
        """Build and encode one tiny table now: first-use costs (kernels, codecs) would otherwise land
        on the first flush, holding the GIL while requests wait."""
        import io

        import pyarrow.parquet as pq

        entry = _Entry("warm-up", time.time(), "-", "-", 0, False, 0.0, {"x": np.zeros(1)}, np.zeros(1))
        pq.write_table(_to_table([entry]), io.BytesIO())

    def record(self, *, request_id: str, ts: float, endpoint: str, model: str, version: int, shadow: bool,
               latency_ms: float, prediction: np.ndarray, batch: Any = None,
               columns: dict[str, np.ndarray] | None = None) -> None:
        """Buffer one request; features come as a serving ``batch`` or as ``columns``."""
        n = len(prediction)
        key = (endpoint, int(ts // 3600))
        chunk = None
        with self._lock:
            if self._rows + n > self.max_rows:
                self.dropped_rows += n
                dropped = True
            else:
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = []
                pending.append(_Entry(request_id, ts, endpoint, model, version, shadow, latency_ms,
                                      batch if batch is not None else columns, prediction))
                pending_rows = self._pending_rows[key] = self._pending_rows.get(key, 0) + n
                if len(pending) >= self.chunk or pending_rows >= self.chunk_rows:
                    chunk = self._pending.pop(key)
                    del self._pending_rows[key]
                self._rows += n
                dropped = False
                full = self._rows >= self.flush_rows
        if dropped:
            self._on_drop(n)
            if self.dropped_rows == n or self.dropped_rows % 10_000 < n:
                log.warning("prediction log buffer full (%d rows); dropped %d rows so far", self.max_rows,
                            self.dropped_rows)
            return
        if chunk is not None:
            self._convert(key, chunk)
        if full:
            self._wake.set()

    def _convert(self, key: tuple[str, int], entries: list[_Entry]) -> None:
        try:
            table = _to_table(entries)
        except Exception:
            n = sum(len(e.prediction) for e in entries)
            with self._lock:
                self.dropped_rows += n
                self._rows -= n
            self._on_drop(n)
            log.exception("preparing %d prediction log rows failed; they were dropped", n)
            return
        with self._lock:
            self._ready.setdefault(key, []).append(table)

    def _run(self) -> None:
        _lower_priority()
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written."""
        import pyarrow as pa

        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                ready, self._ready = self._ready, {}
                self._pending_rows = {}
                self._rows = 0
            for key, entries in pending.items():
                try:
                    ready.setdefault(key, []).append(_to_table(entries))
                except Exception:
                    self._lost(sum(len(e.prediction) for e in entries), "preparing")
            total = 0
            for (endpoint, hour_key), tables in ready.items():
                table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
                try:
                    total += self._write(endpoint, hour_key, table)
                except Exception:   # never let a storage hiccup kill the thread; the rows count as dropped
                    self._lost(table.num_rows, "writing")
            return total

    def _lost(self, n: int, doing: str) -> None:
        self.dropped_rows += n
        self._on_drop(n)
        log.exception("%s %d prediction log rows failed; they were dropped", doing, n)

    def _write(self, endpoint: str, hour_key: int, table: Any) -> int:
        import pyarrow.parquet as pq

        stamp = dt.datetime.fromtimestamp(hour_key * 3600, dt.UTC)
        folder = f"{self.base}/endpoint={endpoint}/date={stamp:%Y-%m-%d}/hour={stamp:%H}"
        self.fs.makedirs(folder, exist_ok=True)
        path = f"{folder}/{uuid.uuid4().hex}.parquet"
        # Dictionary-encode only the repetitive text columns: trying dictionaries on float features
        # costs ten times the rest of the encoding and gains nothing on continuous values.
        text = [f.name for f in table.schema if f.type == "string"]
        with self.fs.open(path, "wb") as fh:
            pq.write_table(table, fh, use_dictionary=text, compression="lz4")
        self.written_files.append(path)
        return table.num_rows

    def close(self) -> None:
        """Stop the thread and flush what is left (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


def _lower_priority(niceness: int = 10) -> None:
    """Run this thread below the request path: Parquet encoding runs without the GIL but still
    competes for the core, and the event loop should win (Linux schedules threads one by one).
    Not the idle class: under saturating load that starves the log and drops most of it."""
    import os

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):   # not Linux, or not allowed: run at normal priority
        pass


def _prediction_column(pred: Any) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim > 1:
        pred = pred[:, -1] if pred.shape[1] > 1 else pred[:, 0]
    return pred


def _to_table(items: list[_Entry]) -> Any:
    """One Arrow table for many requests, built column-wise (one NumPy call per column, not per request)."""
    import pyarrow as pa

    layouts: dict[tuple[Any, ...], list[tuple[_Entry, np.ndarray]]] = {}
    for e in items:
        pred = _prediction_column(e.prediction)
        f = e.features
        names = tuple(e.columns()) if isinstance(f, dict) or f.matrix is None else ("#matrix", f.names, f.dtypes)
        layouts.setdefault((pred.dtype.kind in "iufb", names), []).append((e, pred))
    tables = []
    for (numeric, layout), group in layouts.items():
        counts = np.fromiter((len(p) for _, p in group), np.int64, len(group))
        n = int(counts.sum())
        starts = np.repeat(np.cumsum(counts) - counts, counts)

        def per_request(values: list[Any], dtype: Any, counts: np.ndarray = counts) -> np.ndarray:
            return np.repeat(np.asarray(values, dtype=dtype), counts)

        es = [e for e, _ in group]
        cols: dict[str, Any] = {
            "request_id": pa.array(per_request([e.request_id for e in es], object), pa.string()),
            "row": pa.array((np.arange(n) - starts).astype(np.int32)),
            "ts": pa.array(per_request([int(e.ts * 1_000_000) for e in es], np.int64)).cast(
                pa.timestamp("us", tz="UTC")),
            "model": pa.array(per_request([e.model for e in es], object), pa.string()),
            "version": pa.array(per_request([e.version for e in es], np.int32)),
            "shadow": pa.array(per_request([e.shadow for e in es], bool)),
            "latency_ms": pa.array(per_request([e.latency_ms for e in es], np.float64)),
        }
        pred = np.concatenate([p for _, p in group])
        if numeric:
            cols["prediction"] = pa.array(pred.astype(np.float64))
        else:
            cols["prediction_text"] = pa.array(pred.astype(str))
        if layout and isinstance(layout[0], str) and layout[0] == "#matrix":
            first = es[0].features
            m = np.vstack([e.features.matrix for e in es])
            for j, (name, dtype) in enumerate(zip(first.names, first.dtypes, strict=True)):
                cols[f"feature.{name}"] = pa.array(m[:, j] if dtype == "float64" else m[:, j].astype(dtype))
        else:
            for name in layout:
                values = np.concatenate([e.columns()[name] for e in es])
                cols[f"feature.{name}"] = pa.array(values if values.dtype.kind != "O" else values.astype(str))
        tables.append(pa.table(cols))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def read_prediction_log(root: str, endpoint: str | None = None, since: dt.datetime | None = None,
                        until: dt.datetime | None = None, storage_options: dict[str, Any] | None = None) -> Any:
    """The logged rows as a pyarrow Table (optionally one endpoint, a time window)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.dataset as ds

    fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
    folder = base.rstrip("/") + "/predictions"
    if endpoint:
        folder += f"/endpoint={endpoint}"
    if not fs.exists(folder):
        return pa.table({})
    dataset = ds.dataset(folder, filesystem=fs, format="parquet", partitioning="hive")
    flt = None
    if since is not None:
        flt = ds.field("ts") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    if until is not None:
        f2 = ds.field("ts") < pa.scalar(until, pa.timestamp("us", tz="UTC"))
        flt = f2 if flt is None else flt & f2
    return dataset.to_table(filter=flt)
