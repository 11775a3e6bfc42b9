"""Batch scoring: stream Parquet or CSV in chunks across worker processes (or a cluster's tasks), resumably.

Where chunks are scored is a ``ChunkPool``: local processes here, Ray or Dask tasks in
``batch_cluster``; the planning, the ledger and the output are the same for all of them.

The output is a folder of ``part-<chunk>.parquet`` files (input columns, ``prediction``,
``model_version``) and a manifest ``_conveyor_batch.json`` that records the run's key and the
finished chunks. The key holds everything that changes the output: the model version and the hash
of its artifact, the feature columns, the input (URL, size, modification time), the format, the
chunk size and the output columns. Re-running with the same key after a crash does only the chunks
not yet finished; a run with another key refuses to mix its parts with the earlier ones (or, with
``overwrite``, starts over).

Workers exit when the process that started them dies (even by SIGKILL), so a killed run leaves no
worker holding memory or the metadata database.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from conveyor.errors import Conflict, ConveyorError, InvalidRequest

MANIFEST = "_conveyor_batch.json"
ModelLoader = Callable[[], tuple[Any, str]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a scoring run did."""

    output_uri: str
    model_version: str
    chunks: int
    chunks_scored: int
    chunks_skipped: int
    rows_scored: int
    seconds: float


# --- worker side --------------------------------------------------------------------------------

_model: Any = None
_version: str = ""


def _init_worker(loader: ModelLoader, environ: dict[str, str], owner_pid: int) -> None:
    """Load the model once per worker, in the caller's current environment (a forkserver started
    earlier would otherwise hand workers the environment of that moment: stale credentials, endpoints).
    The worker exits when ``owner_pid`` (the scoring process) dies."""
    global _model, _version
    from conveyor.runtime.processes import tie_to_parent

    tie_to_parent(owner_pid, watchdog=True)
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)
    _model, _version = loader()


_digest: str = ""
_install_lock = threading.Lock()


def install_model(content_hash: str, fetch: Callable[[], Any]) -> None:
    """On a cluster worker: load the model once per process, unless the one of ``content_hash`` is loaded.

    ``fetch`` returns the ``ModelBundle``; it is called only when this process has not loaded that model
    yet, so its bytes cross the object store once per worker, and ``ModelBundle.load`` refuses bytes
    whose hash is not ``content_hash``.
    """
    global _model, _version, _digest
    with _install_lock:
        if _digest == content_hash:
            return
        bundle = fetch()
        if bundle.content_hash != content_hash:
            from conveyor.errors import ArtifactIntegrityError

            raise ArtifactIntegrityError(f"The model shipped to this worker claims {bundle.content_hash}, not the "
                                         f"{content_hash} the run asked for; it was not loaded. Re-run the command.")
        model, version = bundle.load()
        _model, _version, _digest = model, version, content_hash


def _score(task: tuple[int, Any, str, str, dict[str, Any], list[str] | None]) -> tuple[int, int]:
    """Score one chunk and write its part file atomically; returns (chunk, rows)."""
    import fsspec
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    index, source, out_dir, fmt, options, features = task
    if fmt == "parquet":
        uri, start, stop = source
        fs, path = fsspec.core.url_to_fs(uri, **options)
        with fs.open(path, "rb") as fh:
            table = _read_rows(pq.ParquetFile(fh), start, stop)
    else:
        table = pa.ipc.open_stream(pa.py_buffer(source)).read_all()
    inputs = table.select(features) if features else table
    if getattr(_model, "feature_names_in_", None) is not None or any(
            not pa.types.is_integer(t) and not pa.types.is_floating(t) and not pa.types.is_boolean(t)
            for t in inputs.schema.types):
        model_input = inputs.to_pandas()
    else:   # numeric features for a model fitted on arrays: skip pandas entirely
        model_input = np.column_stack([c.to_numpy() for c in inputs.columns])
    pred = np.asarray(_model.predict(model_input))
    if pred.ndim > 1:
        pred = pred[:, -1]
    table = table.append_column("prediction", pa.array(pred))
    table = table.append_column("model_version", pa.array([_version] * table.num_rows, pa.string()))
    ofs, opath = fsspec.core.url_to_fs(out_dir, **options)
    tmp = f"{opath}/.part-{index:06d}.{uuid.uuid4().hex}.tmp"
    with ofs.open(tmp, "wb") as fh:
        pq.write_table(table, fh)
    ofs.mv(tmp, f"{opath}/part-{index:06d}.parquet")
    return index, table.num_rows


def _read_rows(pf: Any, start: int, stop: int) -> Any:
    """Rows [start, stop) of a Parquet file, reading only the row groups that hold them."""
    import pyarrow as pa

    pieces, offset = [], 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset + n > start and offset < stop:
            t = pf.read_row_group(g)
            pieces.append(t.slice(max(0, start - offset), min(n, stop - offset) - max(0, start - offset)))
        offset += n
        if offset >= stop:
            break
    return pa.concat_tables(pieces)


# --- planning -----------------------------------------------------------------------------------

def _format(uri: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    low = uri.lower().rstrip("/")
    if low.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    raise InvalidRequest(f"Cannot tell the format of {uri}; name it .parquet or .csv, or pass --format.",
                         field="input")


def _fingerprint(fs: Any, path: str, uri: str) -> dict[str, Any]:
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise InvalidRequest(f"Input {uri} does not exist.", field="input") from None
    # Each filesystem names its version marker differently: local and GCS "mtime", S3
    # "LastModified"/"ETag", Azure Blob "etag"/"last_modified". Without one a replaced input of the
    # same size would pass for the recorded one.
    version = next((info[k] for k in _VERSION_KEYS if info.get(k)), "")
    return {"uri": uri, "size": info.get("size"), "mtime": str(version)}


_VERSION_KEYS = ("mtime", "LastModified", "ETag", "etag", "last_modified")


def _csv_chunks(fs: Any, path: str, chunk_rows: int) -> Iterator[bytes]:
    """CSV re-chunked to exactly ``chunk_rows`` rows, as Arrow IPC bytes for the workers."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pending: list[Any] = []
    count = 0
    with fs.open(path, "rb") as fh:
        reader = pacsv.open_csv(fh, read_options=pacsv.ReadOptions(block_size=1 << 22))
        for batch in reader:
            pending.append(batch)
            count += batch.num_rows
            while count >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield _ipc(table.slice(0, chunk_rows))
                rest = table.slice(chunk_rows)
                pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield _ipc(pa.Table.from_batches(pending))


def _ipc(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


# --- the run ------------------------------------------------------------------------------------

def _columns(fs: Any, path: str, fmt: str) -> list[str]:
    """The column names of the input, read from the Parquet footer or the CSV header only."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as fh:
        if fmt == "parquet":
            return list(pq.ParquetFile(fh).schema_arrow.names)
        return list(pacsv.open_csv(fh).schema.names)


def check_features(fs: Any, path: str, uri: str, fmt: str, features: list[str] | None, model_version: str) -> None:
    """Fail before any worker starts when the input lacks a column the model's signature names."""
    if not features:
        return
    columns = _columns(fs, path, fmt)
    missing = [f for f in features if f not in columns]
    if missing:
        shown = ", ".join(columns[:30]) + (", …" if len(columns) > 30 else "")
        raise InvalidRequest(
            f"Input {uri} lacks the feature column(s) {', '.join(missing)} that {model_version} expects (its "
            f"signature: {', '.join(features)}). The file has: {shown or '(no columns)'}. Add the missing "
            "columns, or score with a model version whose signature matches the file.", field="input")


# Output columns every part file gets; part of the run key, so a change of layout never mixes parts.
OUTPUT_COLUMNS = ("prediction", "model_version")


def run_key(*, input_fingerprint: dict[str, Any], model_version: str, model_digest: str,
            features: list[str] | None, fmt: str, chunk_rows: int) -> dict[str, Any]:
    """Everything that changes a batch run's output: equal keys may share (resume) an output folder."""
    return {"model_version": model_version, "model_digest": model_digest, "features": features,
            "input": input_fingerprint, "format": fmt, "chunk_rows": chunk_rows,
            "output_columns": list(OUTPUT_COLUMNS)}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if not old:
        return ["the earlier run's key (written by an older version, without one)"]
    return [f"{name} {old.get(name)!r} → {new[name]!r}" for name in new if old.get(name) != new[name]]


BATCH_EXECUTORS = ("process", "ray", "dask")


def score_batch(load_model: ModelLoader | Any, input_uri: str, output_uri: str, *, model_version: str,
                workers: int | None = 2, chunk_rows: int = 100_000, features: list[str] | None = None,
                fmt: str | None = None, overwrite: bool = False, storage_options: dict[str, Any] | None = None,
                progress: bool = True, model_digest: str = "", executor: str = "process",
                address: str | None = None) -> BatchResult:
    """Score ``input_uri`` into the ``output_uri`` folder; resumes a run with the same key (see ``run_key``).

    ``model_digest`` is the content hash of the model's artifact, so a version re-created with other
    weights under the same name never resumes the earlier parts. ``features`` are checked against
    the input's columns before any worker starts.

    ``executor`` is where chunks are scored: ``process`` (local worker processes), ``ray`` or ``dask``
    (tasks on a cluster at ``address``, else the configured one; see ``conveyor.serving.batch_cluster``).
    The output and the ledger are the same whichever scores, so a run may resume on another executor.
    For a cluster ``load_model`` may be a ``ModelBundle`` (the registry's bytes); a loader is called
    here once and its model shipped. ``workers`` None: 2 locally, the cluster's CPUs on a cluster.
    """
    import fsspec
    import pyarrow.parquet as pq

    executor = "process" if executor == "local" else executor
    if executor not in BATCH_EXECUTORS:
        raise InvalidRequest(f"Executor {executor!r} cannot score batches. Use one of: {', '.join(BATCH_EXECUTORS)}.",
                             field="executor")
    if address and executor == "process":
        raise InvalidRequest(f"--address {address} names a cluster, but the executor is local processes. Add "
                             "--executor ray (or dask), or drop --address.", field="address")
    if chunk_rows < 1 or (workers is not None and workers < 1):
        raise InvalidRequest("--chunk-rows and --workers must be at least 1.", field="chunk_rows")
    options = storage_options or {}
    fmt = _format(input_uri, fmt)
    ifs, ipath = fsspec.core.url_to_fs(input_uri, **options)
    ofs, opath = fsspec.core.url_to_fs(output_uri, **options)
    fingerprint = _fingerprint(ifs, ipath, input_uri)
    check_features(ifs, ipath, input_uri, fmt, features, model_version)
    key = run_key(input_fingerprint=fingerprint, model_version=model_version, model_digest=model_digest,
                  features=features, fmt=fmt, chunk_rows=chunk_rows)
    ofs.makedirs(opath, exist_ok=True)
    manifest_path = f"{opath}/{MANIFEST}"
    manifest: dict[str, Any] = {"key": key, "done": {}}
    if ofs.exists(manifest_path):
        old = json.loads(ofs.cat_file(manifest_path))
        same = old.get("key") == key
        if not same and not overwrite:
            raise Conflict(
                f"{output_uri} holds parts of another batch run; its output would differ in: "
                f"{'; '.join(_differences(old.get('key') or {}, key))}. Parts of two runs are never mixed. "
                "Use a new output or --overwrite (which deletes the earlier parts).")
        if same:
            manifest["done"] = old.get("done", {})
        else:
            for p in ofs.glob(f"{opath}/part-*.parquet"):
                ofs.rm(p)
    if fmt == "parquet":
        with ifs.open(ipath, "rb") as fh:
            total_rows = pq.ParquetFile(fh).metadata.num_rows
        n_chunks = max(1, -(-total_rows // chunk_rows))
        sources: Iterator[tuple[int, Any]] = ((i, (input_uri, i * chunk_rows, min(total_rows, (i + 1) * chunk_rows)))
                                              for i in range(n_chunks))
    else:
        total_rows = None
        n_chunks = None
        sources = enumerate(_csv_chunks(ifs, ipath, chunk_rows))

    def save_manifest() -> None:
        tmp = f"{manifest_path}.{uuid.uuid4().hex}.tmp"
        with ofs.open(tmp, "wb") as fh:
            fh.write(json.dumps(manifest, indent=1).encode())
        ofs.mv(tmp, manifest_path)

    save_manifest()
    start = time.perf_counter()
    bar: Any = _NoProgress()
    try:
        with _pool(executor, load_model, workers, address) as pool:
            bar = _progress(progress, total_rows)
            scored_rows, scored, skipped, seen = _drive(pool, sources, manifest, save_manifest, bar,
                                                        (output_uri, fmt, options, features))
    finally:
        bar.stop()
    return BatchResult(output_uri, model_version, n_chunks or seen, scored, skipped, scored_rows,
                       time.perf_counter() - start)


class WorkerLost(Exception):
    """Raised by a pool when a chunk cannot finish (its worker died past every retry); says why."""


class ChunkPool(Protocol):
    """Where chunks are scored: local processes, Ray tasks or Dask tasks. The ledger stays with the caller."""

    slots: int          # chunks kept in flight (twice the parallelism: no worker waits for the next one)

    def submit(self, task: tuple[Any, ...]) -> Any:
        """Start scoring one chunk; returns a handle."""
        ...

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[int, int]]]:
        """Block until at least one handle finished; the finished ones with their (chunk, rows)."""
        ...


def _drive(pool: ChunkPool, sources: Iterator[tuple[int, Any]], manifest: dict[str, Any], save: Callable[[], None],
           bar: Any, common: tuple[str, str, dict[str, Any], list[str] | None]) -> tuple[int, int, int, int]:
    """Submit every chunk the ledger does not hold, record each one as it finishes (rows, chunks, skipped, seen)."""
    output_uri, fmt, options, features = common
    in_flight: dict[Any, int] = {}
    rows = scored = skipped = seen = 0

    def collect() -> None:
        nonlocal rows, scored
        for handle, (index, n) in pool.wait(list(in_flight)):
            in_flight.pop(handle)
            manifest["done"][str(index)] = n
            save()
            bar.advance(n)
            rows += n
            scored += 1

    try:
        for index, source in sources:
            seen += 1
            if str(index) in manifest["done"]:
                skipped += 1
                bar.advance(manifest["done"][str(index)])
                continue
            while len(in_flight) >= pool.slots:
                collect()
            in_flight[pool.submit((index, source, output_uri, fmt, options, features))] = index
        while in_flight:
            collect()
    except WorkerLost as exc:
        lost = sorted(in_flight.values())
        raise ConveyorError(
            f"A scoring worker died while chunks {lost} were in flight ({len(manifest['done'])} chunks are finished "
            f"and recorded){exc.args[0] if exc.args else ''}. Run the same command again to score only the rest."
        ) from None
    return rows, scored, skipped, seen


class _ProcessPool:
    """Local worker processes, each loading the model once (``_init_worker``)."""

    def __init__(self, load_model: ModelLoader, workers: int) -> None:
        # fork is fastest (workers inherit the imports) but unsafe when other threads hold locks: then forkserver.
        safe_to_fork = threading.current_thread() is threading.main_thread() and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork" if safe_to_fork else "forkserver")
        self.slots = workers * 2
        self._pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(load_model, dict(os.environ), os.getpid()))

    def submit(self, task: tuple[Any, ...]) -> Future[tuple[int, int]]:
        try:
            return self._pool.submit(_score, task)
        except BrokenProcessPool:
            raise WorkerLost() from None

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[int, int]]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        try:
            return [(fut, fut.result()) for fut in done]
        except BrokenProcessPool:
            raise WorkerLost() from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _pool(executor: str, load_model: Any, workers: int | None, address: str | None) -> Iterator[ChunkPool]:
    if executor == "process":
        pool: Any = _ProcessPool(load_model, workers or 2)
    else:
        from conveyor.serving.batch_cluster import cluster_pool

        pool = cluster_pool(executor, load_model, workers, address)
    try:
        yield pool
    finally:
        pool.close()


class _NoProgress:
    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass


class _RichProgress:
    def __init__(self, total: int | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # no refresh thread: workers are forked while this runs, and a forked lock-holding thread deadlocks
        self.progress = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                                 TimeElapsedColumn(), transient=False, auto_refresh=False)
        self.task = self.progress.add_task("rows", total=total)
        self.progress.start()

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)
        self.progress.refresh()

    def stop(self) -> None:
        self.progress.stop()


def _progress(enabled: bool, total: int | None) -> Any:
    return _RichProgress(total) if enabled else _NoProgress()


def registered_model_loader(metadata_url: str, artifact_root: str, ref: str) -> tuple[Any, str]:
    """Load ``ref`` (a concrete NAME:VERSION) from the registry; module-level so workers can pickle it."""
    from conveyor.registry import ModelRegistry
    from conveyor.runtime.worker import artifact_store
    from conveyor.store.metadata import MetadataStore

    store = MetadataStore(metadata_url)
    registry = ModelRegistry(store, artifact_store(artifact_root, 65536), "batch")
    version = registry.resolve(ref)
    return registry.load(ref), f"{version.model}:{version.version}"
