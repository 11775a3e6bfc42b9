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
    columns: dict[str, np.ndarray]
    prediction: np.ndarray


class PredictionLog:
    """Collects predictions and writes them in batches from a background thread."""

    def __init__(self, root: str, *, flush_rows: int = 50_000, interval_s: float = 2.0, max_rows: int = 500_000,
                 on_drop: Any = None, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self.base = base.rstrip("/") + "/predictions"
        self.flush_rows, self.interval_s, self.max_rows = flush_rows, interval_s, max_rows
        self._buffer: list[_Entry] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped_rows = 0
        self.written_files: list[str] = []
        self._on_drop = on_drop or (lambda n: None)
        self._thread = threading.Thread(target=self._run, name="conveyor-prediction-log", daemon=True)
        self._thread.start()

    def record(self, *, request_id: str, ts: float, endpoint: str, model: str, version: int, shadow: bool,
               latency_ms: float, columns: dict[str, np.ndarray], prediction: np.ndarray) -> None:
        """Buffer one request (cheap: an append under a lock)."""
        n = len(prediction)
        with self._lock:
            if self._rows + n > self.max_rows:
                self.dropped_rows += n
                dropped = True
            else:
                self._buffer.append(_Entry(request_id, ts, endpoint, model, version, shadow, latency_ms, columns,
                                           prediction))
                self._rows += n
                dropped = False
                full = self._rows >= self.flush_rows
        if dropped:
            self._on_drop(n)
            if self.dropped_rows == n or self.dropped_rows % 10_000 < n:
                log.warning("prediction log buffer full (%d rows); dropped %d rows so far", self.max_rows,
                            self.dropped_rows)
        elif full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written."""
        with self._lock:
            entries, self._buffer, self._rows = self._buffer, [], 0
        if not entries:
            return 0
        try:
            return self._write(entries)
        except Exception:   # never let a storage hiccup kill the thread; the rows are counted as dropped
            n = sum(len(e.prediction) for e in entries)
            self.dropped_rows += n
            self._on_drop(n)
            log.exception("writing %d prediction log rows failed; they were dropped", n)
            return 0

    def _write(self, entries: list[_Entry]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[tuple[str, str, str], list[Any]] = {}
        for e in entries:
            when = dt.datetime.fromtimestamp(e.ts, dt.UTC)
            groups.setdefault((e.endpoint, when.strftime("%Y-%m-%d"), when.strftime("%H")), []).append(e)
        total = 0
        for (endpoint, date, hour), items in groups.items():
            tables = [self._table(e) for e in items]
            table = pa.concat_tables(tables, promote_options="default")
            folder = f"{self.base}/endpoint={endpoint}/date={date}/hour={hour}"
            self.fs.makedirs(folder, exist_ok=True)
            path = f"{folder}/{uuid.uuid4().hex}.parquet"
            with self.fs.open(path, "wb") as fh:
                pq.write_table(table, fh)
            self.written_files.append(path)
            total += table.num_rows
        return total

    @staticmethod
    def _table(e: _Entry) -> Any:
        import pyarrow as pa

        n = len(e.prediction)
        cols: dict[str, Any] = {
            "request_id": pa.array([e.request_id] * n, pa.string()),
            "row": pa.array(np.arange(n, dtype=np.int32)),
            "ts": pa.array(np.full(n, int(e.ts * 1_000_000), dtype="int64")).cast(pa.timestamp("us", tz="UTC")),
            "model": pa.array([e.model] * n, pa.string()),
            "version": pa.array(np.full(n, e.version, dtype=np.int32)),
            "shadow": pa.array(np.full(n, e.shadow)),
            "latency_ms": pa.array(np.full(n, e.latency_ms, dtype=np.float64)),
        }
        pred = np.asarray(e.prediction)
        if pred.ndim > 1:
            pred = pred[:, -1] if pred.shape[1] > 1 else pred[:, 0]
        if pred.dtype.kind in "iufb":
            cols["prediction"] = pa.array(pred.astype(np.float64))
        else:
            cols["prediction_text"] = pa.array(pred.astype(str))
        for name, values in e.columns.items():
            cols[f"feature.{name}"] = pa.array(values if values.dtype.kind != "O" else values.astype(str))
        return pa.table(cols)

    def close(self) -> None:
        """Stop the thread and flush what is left (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


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
