"""Bytes on their way into the artifact store, placed under their content hash only once whole.

The final name of an object is its hash, known only after the last byte, so the bytes wait
somewhere first. Where depends on the filesystem, and each way keeps the same promise: a crash at
any moment leaves under the final name either nothing or the whole object.

- A local folder: a temporary file, renamed into place (``os.replace`` is atomic).
- An object store whose uploads are atomic (S3, GCS, Azure Blob, memory): an object appears only
  once its upload completes, so bytes up to ``IN_MEMORY_MAX_BYTES`` are kept in memory and
  uploaded straight to the final name in one request. Going through a temporary object would
  cost a server-side copy of every byte (a rename is a copy there) and one more request.
  Bigger objects stream to a temporary object, never held whole, and are moved.
- Any other filesystem: a temporary file, then a move.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from typing import Any

CHUNK_BYTES = 8 << 20            # streamed writes move this much at a time: big enough for multipart uploads
IN_MEMORY_MAX_BYTES = 128 << 20  # up to this size an object store gets an object in one upload to its final name
ATOMIC_UPLOADS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})


def uploads_are_atomic(fs: Any) -> bool:
    """True when a file written on ``fs`` becomes visible only once complete."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool(ATOMIC_UPLOADS.intersection(protocols))


class StagedObject:
    """A write-only file collecting one object's bytes; ``place`` puts them under the final name.

    ``discard`` (after any failure) removes whatever was staged. ``mkdir`` makes a folder once.
    """

    def __init__(self, fs: Any, base: str, *, local: bool, mkdir: Callable[[str], None]) -> None:
        self._fs, self._base, self._local, self._mkdir = fs, base, local, mkdir
        self._memory: io.BytesIO | None = None
        self._file: Any = None
        self._tmp: str | None = None
        self._limit = IN_MEMORY_MAX_BYTES if not local and uploads_are_atomic(fs) else 0
        if self._limit:
            self._memory = io.BytesIO()
        else:
            self._open_temporary()

    def _open_temporary(self) -> None:
        self._mkdir(f"{self._base}/tmp")
        self._tmp = f"{self._base}/tmp/{uuid.uuid4().hex}"
        self._file = self._fs.open(self._tmp, "wb", block_size=CHUNK_BYTES)

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if self._memory is not None:
            if self._memory.tell() + n <= self._limit:
                self._memory.write(data)
                return n
            self._open_temporary()                # too big to keep: stream from here on
            self._file.write(self._memory.getbuffer())
            self._memory = None
        self._file.write(data)
        return n

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def place(self, final: str, size: int, *, replace: bool = False) -> None:
        """Put the bytes under ``final``. An object already there with the same size is kept
        (deduplication) unless ``replace``, which also repairs a damaged copy."""
        fs = self._fs
        if self._memory is not None:
            if replace or not self._present(final, size):
                fs.pipe_file(final, self._memory.getvalue())
            self._memory = None
            return
        self._file.close()
        self._file = None
        self._mkdir(final.rsplit("/", 1)[0])
        if self._local:
            if not replace and os.path.exists(final) and os.path.getsize(final) == size:
                os.unlink(self._tmp)
            else:
                os.replace(self._tmp, final)      # atomic
        elif not replace and self._present(final, size):
            self.discard()
        else:
            fs.mv(self._tmp, final)
        self._tmp = None

    def _present(self, final: str, size: int) -> bool:
        try:
            return self._fs.info(final).get("size") == size
        except FileNotFoundError:
            return False

    def discard(self) -> None:
        """Drop what was staged. Best effort: a temporary file left behind is never referenced by any
        record, and the error that made us discard it is the one the caller must see."""
        self._memory = None
        try:
            if self._file is not None:
                self._file.close()
        except Exception:  # noqa: BLE001
            pass
        self._file = None
        if self._tmp is not None:
            try:
                self._fs.rm(self._tmp)
            except Exception:  # noqa: BLE001
                pass
            self._tmp = None
