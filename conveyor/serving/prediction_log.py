"""The prediction log: requests buffered in memory, flushed off the request path to Parquet.

Layout: ``<root>/predictions/endpoint=<e>/date=<YYYY-MM-DD>/hour=<HH>/<uuid>.parquet``. One row per
predicted row: ``request_id``, ``row``, ``ts`` (UTC), ``endpoint``, ``model``, ``version``, ``shadow``,
``latency_ms``, ``prediction`` (or ``prediction_text`` for labels that are text) and one
``feature.<name>`` column per input. A full buffer drops whole requests and counts them rather
than slow requests down; stopping the log flushes what is buffered.

Crash safety: a file is written under a temporary name (``.<uuid>.parquet.tmp``, which readers skip)
and renamed when complete, so a SIGKILL never leaves a partial Parquet file where readers look (object
stores publish an object only when its upload completes, so there it is written in place). The rows a
SIGKILL can lose are those not yet written: at most ``max_rows`` per server process, since rows being
written still count against the buffer until their file is complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("conveyor.serving.prediction_log")


@dataclass(slots=True)
class _Entry:
    """A request whose features are not one numeric matrix, or whose predictions are text."""

    request_id: str
    ts: float
    model: str
    version: int
    shadow: bool
    latency_ms: float
    features: Any          # a serving Batch (columns built lazily) or a dict of column arrays
    prediction: np.ndarray  # one value per row

    def columns(self) -> dict[str, np.ndarray]:
        return self.features if isinstance(self.features, dict) else self.features.columns


_BLOCK_BYTES = 4 << 20


class _Block:
    """Rows of one (endpoint, hour, feature layout) in preallocated arrays, filled by copies on the request path.

    A request costs two slice copies and a few list appends; Arrow and Parquet work happens later on
    the writer thread, or in the writer process when the arrays live in shared memory (``shared``).
    """

    __slots__ = ("names", "dtypes", "features", "prediction", "rows", "counts", "request_ids", "ts", "models",
                 "versions", "shadows", "latency_ms", "shared")

    def __init__(self, names: tuple[str, ...], dtypes: tuple[str, ...], capacity: int,
                 shared_folder: str | None = None) -> None:
        self.shared = None
        if shared_folder is not None:
            from conveyor.serving.log_writer import SharedArrays

            self.shared = SharedArrays(capacity, len(names), shared_folder)
            self.features, self.prediction = self.shared.features, self.shared.prediction
        else:
            self.features = np.empty((capacity, len(names)))
            self.prediction = np.empty(capacity)
        self.reset(names, dtypes)

    def reset(self, names: tuple[str, ...], dtypes: tuple[str, ...]) -> None:
        self.names, self.dtypes = names, dtypes
        self.rows = 0
        self.counts: list[int] = []
        self.request_ids: list[str] = []
        self.ts: list[float] = []
        self.models: list[str] = []
        self.versions: list[int] = []
        self.shadows: list[bool] = []
        self.latency_ms: list[float] = []

    def fits(self, n: int) -> bool:
        return self.rows + n <= len(self.prediction)

    def add(self, matrix: np.ndarray, prediction: np.ndarray, request_id: str, ts: float, model: str, version: int,
            shadow: bool, latency_ms: float) -> None:
        n = len(prediction)
        end = self.rows + n
        self.features[self.rows:end] = matrix
        self.prediction[self.rows:end] = prediction
        self.rows = end
        self.counts.append(n)
        self.request_ids.append(request_id)
        self.ts.append(ts)
        self.models.append(model)
        self.versions.append(version)
        self.shadows.append(shadow)
        self.latency_ms.append(latency_ms)

    def table(self) -> Any:
        return block_table(self.names, self.dtypes, self.features, self.prediction, self.rows, self.counts,
                           self.request_ids, self.ts, self.models, self.versions, self.shadows, self.latency_ms)

    def describe(self, endpoint: str, hour: int) -> dict[str, Any]:
        """What the writer process needs to read a shared block."""
        assert self.shared is not None
        return {"path": self.shared.path, "capacity": len(self.prediction), "names": self.names,
                "dtypes": self.dtypes, "endpoint": endpoint, "hour": hour, "rows": self.rows, "counts": self.counts,
                "request_ids": self.request_ids, "ts": self.ts, "models": self.models, "versions": self.versions,
                "shadows": self.shadows, "latency_ms": self.latency_ms}

    def release(self) -> None:
        if self.shared is not None:
            self.shared.release()
            self.shared = None


def block_table(names: tuple[str, ...], dtypes: tuple[str, ...], features: np.ndarray, prediction: np.ndarray,
                rows: int, counts: list[int], request_ids: list[str], ts: list[float], models: list[str],
                versions: list[int], shadows: list[bool], latency_ms: list[float]) -> Any:
    """The Arrow table of a block's first ``rows`` rows (copied: the block is reused)."""
    import pyarrow as pa

    cols = _request_columns(np.asarray(counts, dtype=np.int64), request_ids, ts, models, versions, shadows,
                            latency_ms)
    cols["prediction"] = pa.array(prediction[:rows].copy())
    columns = features[:rows].T.copy()   # one copy, column by column
    for j, (name, dtype) in enumerate(zip(names, dtypes, strict=True)):
        cols[f"feature.{name}"] = pa.array(columns[j] if dtype == "float64" else columns[j].astype(dtype))
    # Nothing here can be null: declared so, Parquet skips definition levels (40% of the encoding).
    schema = pa.schema([pa.field(name, col.type, nullable=False) for name, col in cols.items()])
    return pa.Table.from_arrays(list(cols.values()), schema=schema)


class LogFiles:
    """Writes tables as the log's Parquet files, each complete or absent."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None, row_group_rows: int) -> None:
        import fsspec
        import pyarrow.parquet  # noqa: F401  (imported now, not on the first flush while serving)

        self.fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self.base = base.rstrip("/") + "/predictions"
        self.row_group_rows = row_group_rows

    def write(self, endpoint: str, hour_key: int, tables: list[Any]) -> tuple[int, list[str]]:
        """One Parquet file per schema (feature layouts can change within an hour; readers unify them)."""
        groups: list[tuple[Any, list[Any]]] = []
        for table in tables:
            group = next((g for g in groups if g[0] == table.schema), None)
            if group is None:
                groups.append((table.schema, [table]))
            else:
                group[1].append(table)
        stamp = dt.datetime.fromtimestamp(hour_key * 3600, dt.UTC)
        folder = f"{self.base}/endpoint={endpoint}/date={stamp:%Y-%m-%d}/hour={stamp:%H}"
        self.fs.makedirs(folder, exist_ok=True)
        rows, paths = 0, []
        for schema, group in groups:
            path = f"{folder}/{uuid.uuid4().hex}.parquet"
            rows += self._write_file(path, schema, group)
            paths.append(path)
        return rows, paths

    def _write_file(self, path: str, schema: Any, tables: list[Any]) -> int:
        folder, _, name = path.rpartition("/")
        local = _is_local(self.fs)
        target = f"{folder}/.{name}.tmp" if local else path
        try:
            with self.fs.open(target, "wb") as fh:
                rows = _encode(fh, schema, tables, self.row_group_rows)
            if local:
                self.fs.mv(target, path)             # a rename: the file appears whole or not at all
        except BaseException:
            with contextlib.suppress(Exception):      # no half-written file for readers to trip on
                self.fs.rm(target)
            raise
        return rows


class PredictionLog:
    """Collects predictions and writes them in batches from a background thread.

    The request path only copies: numeric features (the validated float64 matrix) and predictions
    go into preallocated blocks of ``chunk_rows`` rows per (endpoint, hour, feature layout); other
    inputs are kept as they came. The writer thread wakes every ``interval_s`` seconds, or once
    ``flush_rows`` rows wait, turns blocks into Arrow tables and encodes Parquet in row groups of
    ``row_group_rows``, giving the core back after each one. On one core a thread that is not
    interrupted keeps it for a whole scheduler tick (4 ms at 250 Hz); short pieces keep every
    pause of the event loop below a millisecond.

    ``writer="process"`` moves that work out of the serving process: blocks live in shared memory
    and a child process (``log_writer.py``), below the server's priority and off the CPUs it is
    pinned to, turns them into files; the thread only hands blocks over and waits for the answer.
    """

    def __init__(self, root: str, *, flush_rows: int = 50_000, interval_s: float = 2.0, max_rows: int = 500_000,
                 chunk_rows: int = 4096, row_group_rows: int = 4096, on_drop: Any = None,
                 storage_options: dict[str, Any] | None = None, writer: str = "thread") -> None:
        if writer not in ("thread", "process"):
            from conveyor.errors import ConfigurationError

            raise ConfigurationError(f"Prediction log writer {writer!r} is not one of: thread, process "
                                     "(CONVEYOR_SERVE_LOG_WRITER).")
        self.files = LogFiles(root, storage_options, row_group_rows)
        self.fs, self.base = self.files.fs, self.files.base
        self.writer = writer
        self._process = None
        self._shared_folder: str | None = None
        if writer == "process":
            from conveyor.serving.log_writer import WriterProcess, shared_folder

            self._shared_folder = shared_folder()
            self._process = WriterProcess(root, storage_options, row_group_rows)
        self.flush_rows, self.interval_s, self.max_rows = flush_rows, interval_s, max_rows
        self.chunk_rows, self.row_group_rows = chunk_rows, row_group_rows
        self._open: dict[tuple[Any, ...], _Block] = {}            # (endpoint, hour, names, dtypes) -> block
        self._full: list[tuple[tuple[Any, ...], _Block]] = []
        self._entries: dict[tuple[str, int], list[_Entry]] = {}    # (endpoint, hour) -> requests of other layouts
        self._spare: dict[tuple[int, int], list[_Block]] = {}      # (width, rows) -> emptied blocks for reuse
        self._rows = 0          # buffered + being written: never above max_rows (the most a crash loses)
        self._buffered = 0      # waiting for the writer
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

        block = _Block(("x",), ("float64",), 1)
        block.add(np.zeros((1, 1)), np.zeros(1), "warm-up", time.time(), "-", 0, False, 0.0)
        entry = _Entry("warm-up", time.time(), "-", 0, False, 0.0, {"x": np.zeros(1)}, np.zeros(1))
        for table in (block.table(), *_entry_tables([entry])):
            _encode(io.BytesIO(), table.schema, [table], 1)

    def record(self, *, request_id: str, ts: float, endpoint: str, model: str, version: int, shadow: bool,
               latency_ms: float, prediction: np.ndarray, batch: Any = None,
               columns: dict[str, np.ndarray] | None = None) -> None:
        """Buffer one request; features come as a serving ``batch`` or as ``columns``."""
        pred = _prediction_column(prediction)
        n = len(pred)
        hour = int(ts // 3600)
        matrix = batch.matrix if batch is not None else None
        fast = matrix is not None and pred.dtype.kind in "iufb"
        with self._lock:
            if self._rows + n > self.max_rows:
                self.dropped_rows += n
                dropped = True
            else:
                if fast:
                    key = (endpoint, hour, batch.names, batch.dtypes)
                    block = self._open.get(key)
                    if block is None or not block.fits(n):
                        busy = block is not None       # this key already filled a block in this interval
                        if busy:
                            self._full.append((key, block))
                        block = self._open[key] = self._block(batch.names, batch.dtypes, n, busy)
                    block.add(matrix, pred, request_id, ts, model, version, shadow, latency_ms)
                else:
                    self._entries.setdefault((endpoint, hour), []).append(
                        _Entry(request_id, ts, model, version, shadow, latency_ms,
                               batch if batch is not None else columns, pred))
                self._rows += n
                self._buffered += n
                dropped = False
                full = self._buffered >= self.flush_rows
        if dropped:
            self._on_drop(n)
            if self.dropped_rows == n or self.dropped_rows % 10_000 < n:
                log.warning("prediction log buffer full (%d rows); dropped %d rows so far", self.max_rows,
                            self.dropped_rows)
            return
        if full:
            self._wake.set()

    def _block_rows(self, width: int, busy: bool) -> int:
        """Block size: small for a quiet key, ``chunk_rows`` for a busy one, at most about 4 MiB of features."""
        rows = self.chunk_rows if busy else min(self.chunk_rows, 256)
        return min(rows, max(1, _BLOCK_BYTES // (8 * (width + 1))))

    def _block(self, names: tuple[str, ...], dtypes: tuple[str, ...], n: int, busy: bool) -> _Block:
        rows = self._block_rows(len(names), busy)
        if n > rows:                                # one request larger than a block: a block of its own
            return _Block(names, dtypes, n, self._shared_folder)
        spare = self._spare.get((len(names), rows))
        if spare:
            block = spare.pop()
            block.reset(names, dtypes)
            return block
        return _Block(names, dtypes, rows, self._shared_folder)

    def _recycle(self, block: _Block) -> None:
        """Keep an emptied block of a standard size for reuse (fresh pages fault on first touch)."""
        rows, width = block.features.shape
        if rows in (self._block_rows(width, True), self._block_rows(width, False)):
            with self._lock:
                spare = self._spare.setdefault((width, rows), [])
                if len(spare) < 8:
                    spare.append(block)
                    return
        block.release()

    def _run(self) -> None:
        _lower_priority()
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written."""
        with self._write_lock:
            with self._lock:
                blocks = self._full + list(self._open.items())
                entries = self._entries
                self._full, self._open, self._entries = [], {}, {}
                taken, self._buffered = self._buffered, 0
            try:
                return self._write_all(blocks, entries)
            finally:
                with self._lock:
                    self._rows -= taken

    def _write_all(self, blocks: list[Any], entries: dict[tuple[str, int], list[_Entry]]) -> int:
        """Turn what one flush took into tables and files."""
        if self._process is not None and self._process.ready():
            written = self._write_in_process(blocks, entries)
            if written is not None:
                return written
        # Here: the writer thread's own way, also while the writer process starts or if it keeps failing.
        tables: dict[tuple[str, int], list[Any]] = {}
        for (endpoint, hour, *_), block in blocks:
            try:
                tables.setdefault((endpoint, hour), []).append(block.table())
            except Exception:
                self._lost(block.rows, "preparing")
            self._recycle(block)
        for key, group in entries.items():
            try:
                tables.setdefault(key, []).extend(_entry_tables(group))
            except Exception:
                self._lost(sum(len(e.prediction) for e in group), "preparing")
        total = 0
        for (endpoint, hour), group in tables.items():
            try:
                total += self._write(endpoint, hour, group)
            except Exception:   # never let a storage hiccup kill the thread; the rows count as dropped
                self._lost(sum(t.num_rows for t in group), "writing")
        return total

    def _write_in_process(self, blocks: list[Any], entries: dict[tuple[str, int], list[_Entry]]) -> int | None:
        """Hand one flush to the writer process and wait for its answer (on this thread, not the loop);
        None when the process failed twice, and the caller writes the rows itself."""
        if not blocks and not entries:
            return 0
        described = [block.describe(endpoint, hour) for (endpoint, hour, *_), block in blocks if block.rows]
        plain = [(key, [(e.request_id, e.ts, e.model, e.version, e.shadow, e.latency_ms,
                         {k: np.asarray(v) for k, v in e.columns().items()}, e.prediction) for e in group])
                 for key, group in entries.items()]
        rows = sum(b["rows"] for b in described) + sum(len(i[-1]) for _, g in plain for i in g)
        try:
            answer = self._process.flush(described, plain)
        except Exception:                              # the child died twice in a row: write here instead
            log.exception("the prediction log's writer process failed twice; writing %d rows in the server", rows)
            return None
        for _, block in blocks:
            self._recycle(block)
        self.written_files.extend(answer["paths"])
        if answer["lost"]:
            self.dropped_rows += answer["lost"]
            self._on_drop(answer["lost"])
            for error in answer["errors"]:
                log.error("prediction log: %s; those rows were dropped", error)
        return int(answer["rows"])

    def _lost(self, n: int, doing: str) -> None:
        self.dropped_rows += n
        self._on_drop(n)
        log.exception("%s %d prediction log rows failed; they were dropped", doing, n)

    def _write(self, endpoint: str, hour_key: int, tables: list[Any]) -> int:
        rows, paths = self.files.write(endpoint, hour_key, tables)
        self.written_files.extend(paths)
        return rows

    def close(self) -> None:
        """Stop the thread and flush what is left (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        if self._process is not None:
            self._process.close()
            with self._lock:
                spare, self._spare = self._spare, {}
            for blocks in spare.values():
                for block in blocks:
                    block.release()


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return bool({"file", "local"} & set(protocol))


def is_log_file(path: str) -> bool:
    """A complete prediction-log file (not a temporary one of a write in progress or cut short)."""
    return path.endswith(".parquet") and not path.rpartition("/")[2].startswith(".")


def _encode(fh: Any, schema: Any, tables: list[Any], row_group_rows: int) -> int:
    """Write ``tables`` as one Parquet file in row groups, giving the core back after each one.

    Dictionaries only for the repetitive text columns (on float features they cost ten times the
    rest of the encoding), statistics only for the time stamps that readers filter on.
    """
    import pyarrow.parquet as pq

    text = [f.name for f in schema if f.type == "string"]
    rows = 0
    with pq.ParquetWriter(fh, schema, use_dictionary=text, compression="lz4", write_statistics=["ts"],
                          write_batch_size=row_group_rows) as writer:
        for table in tables:
            for piece in table.to_batches(max_chunksize=row_group_rows):
                writer.write_batch(piece, row_group_size=row_group_rows)
                rows += piece.num_rows
                _give_way()
    return rows


def _give_way() -> None:
    """Let the request path have the core between two pieces of background work."""
    if hasattr(os, "sched_yield"):
        os.sched_yield()


def _lower_priority(niceness: int = 10) -> None:
    """Run this thread below the request path: Parquet encoding runs without the GIL but still
    competes for the core, and the event loop should win (Linux schedules threads one by one).
    Not the idle class: under saturating load that starves the log and drops most of it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):   # not Linux, or not allowed: run at normal priority
        pass


def _prediction_column(pred: Any) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim > 1:
        pred = pred[:, -1] if pred.shape[1] > 1 else pred[:, 0]
    return pred


def _request_columns(counts: np.ndarray, request_ids: list[str], ts: list[float], models: list[str],
                     versions: list[int], shadows: list[bool], latency_ms: list[float]) -> dict[str, Any]:
    """The per-request columns, one value a row (``counts`` rows per request), built column-wise."""
    import pyarrow as pa

    n = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)

    def per_row(values: list[Any], dtype: Any) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=dtype), counts)

    which = pa.array(np.repeat(np.arange(len(counts), dtype=np.int32), counts))   # request of each row
    return {
        "request_id": pa.array(request_ids, pa.string()).take(which),
        "row": pa.array((np.arange(n) - starts).astype(np.int32)),
        "ts": pa.array((per_row(ts, np.float64) * 1_000_000).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
        "model": pa.array(models, pa.string()).take(which),
        "version": pa.array(per_row(versions, np.int32)),
        "shadow": pa.array(per_row(shadows, bool)),
        "latency_ms": pa.array(per_row(latency_ms, np.float64)),
    }


def _entry_tables(items: list[_Entry]) -> list[Any]:
    """Arrow tables for requests of the general path, one per layout, built column-wise."""
    import pyarrow as pa

    layouts: dict[tuple[Any, ...], list[_Entry]] = {}
    for e in items:
        layouts.setdefault((e.prediction.dtype.kind in "iufb", tuple(e.columns())), []).append(e)
    tables = []
    for (numeric, names), group in layouts.items():
        counts = np.fromiter((len(e.prediction) for e in group), np.int64, len(group))
        cols = _request_columns(counts, [e.request_id for e in group], [e.ts for e in group],
                                [e.model for e in group], [e.version for e in group], [e.shadow for e in group],
                                [e.latency_ms for e in group])
        pred = np.concatenate([e.prediction for e in group])
        if numeric:
            cols["prediction"] = pa.array(pred.astype(np.float64))
        else:
            cols["prediction_text"] = pa.array(pred.astype(str))
        for name in names:
            values = np.concatenate([e.columns()[name] for e in group])
            cols[f"feature.{name}"] = pa.array(values if values.dtype.kind != "O" else values.astype(str))
        tables.append(pa.table(cols))
    return tables


def read_prediction_log(root: str, endpoint: str | None = None, since: dt.datetime | None = None,
                        until: dt.datetime | None = None, storage_options: dict[str, Any] | None = None) -> Any:
    """The logged rows as a pyarrow Table (optionally one endpoint, a time window).

    Files of hours outside the window are not opened. The schema is the union of every file read
    (a new model version may log other features), so no column is lost to the first file's layout.
    """
    import fsspec
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
    folder = base.rstrip("/") + "/predictions"
    if endpoint:
        folder += f"/endpoint={endpoint}"
    files = [f for f in fs.find(folder) if is_log_file(f) and hour_in_window(f, since, until)]
    if not files:
        return pa.table({})
    factory = ds.FileSystemDatasetFactory(
        pafs.PyFileSystem(pafs.FSSpecHandler(fs)), files, ds.ParquetFileFormat(),
        ds.FileSystemFactoryOptions(partition_base_dir=folder, partitioning=ds.HivePartitioning.discover()))
    dataset = factory.finish(factory.inspect(promote_options="permissive"))
    flt = None
    if since is not None:
        flt = ds.field("ts") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    if until is not None:
        f2 = ds.field("ts") < pa.scalar(until, pa.timestamp("us", tz="UTC"))
        flt = f2 if flt is None else flt & f2
    return dataset.to_table(filter=flt)


def hour_in_window(path: str, since: dt.datetime | None, until: dt.datetime | None) -> bool:
    """Whether the ``date=…/hour=…`` partition of ``path`` can hold rows in [since, until)."""
    if since is None and until is None:
        return True
    try:
        date = path.split("date=", 1)[1][:10]
        hour = int(path.split("hour=", 1)[1][:2])
        start = dt.datetime.fromisoformat(date).replace(hour=hour, tzinfo=dt.UTC)
    except (IndexError, ValueError):
        return True                                 # not our layout: let the row filter decide
    if since is not None and start + dt.timedelta(hours=1) <= _utc(since):
        return False
    return until is None or start < _utc(until)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
