"""Hashing while bytes are written: the content hash costs no second pass over the data."""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

import orjson

ALGORITHM = "sha256"


def digest(data: bytes | memoryview) -> str:
    """``sha256:<hex>`` of a buffer."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of a value (sorted keys, no spaces)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def hash_json(value: Any) -> str:
    """Content hash of a JSON-able value, as used for inline artifacts and cache keys."""
    return digest(canonical_json(value))


class HashingWriter:
    """A write-only binary file that hashes and counts what passes through it."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        self._hash.update(data)
        n = self._target.write(data)
        size = n if n is not None else memoryview(data).nbytes
        self.size += size
        return size

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    @property
    def content_hash(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"
