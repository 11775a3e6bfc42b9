"""The prediction log's writer process: Arrow and Parquet work off the serving process and its core.

The server copies each request's rows into blocks that live in shared memory (files under
``/dev/shm``, mapped by both processes). A flush sends this process a description of the full
blocks (where they are, how many rows, the per-request columns) over its stdin; it maps them, builds
the tables, encodes and writes the files, and answers on stdout with the rows written and the paths.
Only then does the server reuse the blocks and release the rows from its buffer bound, so the rows a
crash of either process can lose stay bounded by ``max_rows``, as with the writer thread.

The process runs at a lower priority and, when the server is pinned to some CPUs, on the others
(``os.sched_setaffinity``), so that encoding never takes the core the event loop runs on. Frames on
the pipes are length-prefixed pickles between a server and the child it started; nothing else reads
or writes them.

Run as ``python -m conveyor.serving.log_writer`` by ``PredictionLog(writer="process")``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import mmap
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger("conveyor.serving.prediction_log")

_HEADER = struct.Struct("<Q")
PREFIX = "conveyor-plog-"


def shared_folder() -> str:
    """Where shared blocks live: RAM-backed ``/dev/shm`` on Linux, the temporary folder elsewhere."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


def send(fh: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_HEADER.pack(len(data)))
    fh.write(data)
    fh.flush()


def receive(fh: IO[bytes]) -> Any:
    head = _read_exactly(fh, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return pickle.loads(_read_exactly(fh, size))   # noqa: S301 - a frame from our own child/parent process


def _read_exactly(fh: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = fh.read(left)
        if not chunk:
            raise EOFError("the prediction log's writer pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class SharedArrays:
    """A features matrix and a prediction vector in one file-backed shared mapping."""

    __slots__ = ("path", "mapping", "features", "prediction")

    def __init__(self, capacity: int, width: int, folder: str) -> None:
        self.path = os.path.join(folder, f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex}")
        nbytes = max(8, 8 * capacity * (width + 1))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, nbytes)
            self.mapping = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        buf = np.frombuffer(self.mapping, dtype=np.float64)
        self.features = buf[: capacity * width].reshape(capacity, width)
        self.prediction = buf[capacity * width: capacity * (width + 1)]

    def release(self) -> None:
        self.features = self.prediction = None
        with contextlib.suppress(BufferError, ValueError):
            self.mapping.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def map_block(path: str, capacity: int, width: int) -> tuple[mmap.mmap, np.ndarray, np.ndarray]:
    """The writer's read-only view of a shared block."""
    with open(path, "rb") as fh:
        mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    buf = np.frombuffer(mapping, dtype=np.float64)
    return mapping, buf[: capacity * width].reshape(capacity, width), buf[capacity * width: capacity * (width + 1)]


class WriterProcess:
    """The server's handle on its writer child: start it, hand it a flush, restart it if it died."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None, row_group_rows: int) -> None:
        self._init = {"root": root, "storage_options": storage_options or {}, "row_group_rows": row_group_rows,
                      "parent": os.getpid(), "folder": shared_folder()}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        import conveyor

        env = dict(os.environ)
        source = str(Path(conveyor.__file__).resolve().parent.parent)   # the same conveyor, wherever it came from
        env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen([sys.executable, "-m", "conveyor.serving.log_writer"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        send(self._proc.stdin, self._init)
        self._ready = False

    def _exchange(self, message: Any) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        if not self._ready:
            receive(proc.stdout)          # "ready": imports and warm-up done in the child
            self._ready = True
        send(proc.stdin, message)
        return receive(proc.stdout)

    def ready(self) -> bool:
        """Whether the child has finished starting (imports, warm-up); never waits."""
        if self._ready:
            return True
        import select

        proc = self._proc
        if proc is None or proc.stdout is None:
            return False
        with self._lock:
            if not self._ready and select.select([proc.stdout], [], [], 0)[0]:
                try:
                    receive(proc.stdout)
                except (EOFError, OSError, pickle.UnpicklingError):
                    self._kill()
                    self.restarts += 1
                    self._start()
                    return False
                self._ready = True
        return self._ready

    def flush(self, blocks: list[dict[str, Any]], entries: list[Any]) -> dict[str, Any]:
        """Have the child write these; one restart and retry if it died (rows may then be written twice,
        never lost silently: at least once)."""
        message = ("flush", blocks, entries)
        with self._lock:
            try:
                return self._exchange(message)
            except (BrokenPipeError, EOFError, OSError, pickle.UnpicklingError):
                log.warning("the prediction log's writer process stopped (exit code %s); restarting it",
                            self._proc.poll() if self._proc else None)
                self._kill()
                self.restarts += 1
                self._start()
                return self._exchange(message)

    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def close(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            with contextlib.suppress(BrokenPipeError, EOFError, OSError):
                if not self._ready:
                    receive(proc.stdout)
                send(proc.stdin, ("stop",))
                receive(proc.stdout)
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill()
            self._proc = None


# --- the child ----------------------------------------------------------------------------------

def _off_the_serving_cores(parent: int) -> None:
    """Prefer CPUs the server is not pinned to, and run below it."""
    with contextlib.suppress(AttributeError, OSError):
        mine = os.sched_getaffinity(0)
        every = set(range(os.cpu_count() or 1))
        others = every - mine
        if others:
            try:
                os.sched_setaffinity(0, others)
            except OSError:                         # a cpuset that does not allow them: stay where we are
                pass
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 10)


def _write_flush(files: Any, blocks: list[dict[str, Any]], entries: list[Any]) -> dict[str, Any]:
    from conveyor.serving.prediction_log import _Entry, _entry_tables, block_table

    tables: dict[tuple[str, int], list[Any]] = {}
    lost, errors = 0, []
    for b in blocks:
        mapping = features = prediction = None
        try:
            mapping, features, prediction = map_block(b["path"], b["capacity"], len(b["names"]))
            tables.setdefault((b["endpoint"], b["hour"]), []).append(
                block_table(b["names"], b["dtypes"], features, prediction, b["rows"], b["counts"],
                            b["request_ids"], b["ts"], b["models"], b["versions"], b["shadows"], b["latency_ms"]))
        except Exception as exc:  # noqa: BLE001 - counted and reported to the server, which logs it
            lost += b["rows"]
            errors.append(f"preparing {b['rows']} rows: {exc!r}")
        finally:
            del features, prediction
            if mapping is not None:
                with contextlib.suppress(BufferError):
                    mapping.close()
    for (endpoint, hour), items in entries:
        try:
            tables.setdefault((endpoint, hour), []).extend(_entry_tables([_Entry(*item) for item in items]))
        except Exception as exc:  # noqa: BLE001
            lost += sum(len(item[-1]) for item in items)
            errors.append(f"preparing {len(items)} requests: {exc!r}")
    rows, paths = 0, []
    for (endpoint, hour), group in tables.items():
        try:
            n, written = files.write(endpoint, hour, group)
            rows += n
            paths.extend(written)
        except Exception as exc:  # noqa: BLE001
            lost += sum(t.num_rows for t in group)
            errors.append(f"writing {sum(t.num_rows for t in group)} rows: {exc!r}")
    return {"rows": rows, "lost": lost, "paths": paths, "errors": errors}


def main() -> None:
    import signal

    # Ctrl-C and SIGTERM reach the whole process group; the server, not this child, decides when to stop:
    # it flushes through us and then says stop (or dies, and we see the pipe close).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr                          # nothing but frames on the pipe
    try:
        init = receive(inp)
    except EOFError:                                 # the server stopped before it said anything
        return
    _off_the_serving_cores(init["parent"])
    from conveyor.serving.prediction_log import LogFiles, PredictionLog

    PredictionLog._warm_up()
    files = LogFiles(init["root"], init["storage_options"], init["row_group_rows"])
    try:
        send(out, ("ready",))
        while True:
            message = receive(inp)
            if message[0] == "stop":
                send(out, ("stopped",))
                return
            send(out, _write_flush(files, message[1], message[2]))
    except (EOFError, BrokenPipeError):
        # The server is gone without saying stop (killed): its blocks are of no use to anyone now.
        for path in glob.glob(os.path.join(init["folder"], f"{PREFIX}{init['parent']}-*")):
            with contextlib.suppress(OSError):
                os.unlink(path)


if __name__ == "__main__":
    main()
