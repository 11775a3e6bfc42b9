"""Rate limits that hold across a server's worker processes: token buckets in one shared memory map.

``conveyor serve --workers N`` creates the table (``create_table``) before the workers start; each
worker maps the same file and takes tokens under an exclusive ``flock`` on it, so a key limited to
5 requests a second gets 5 in all, not 5 per worker. A take is two system calls and a few struct
reads (microseconds); requests of keys without a limit never come here.

Layout: ``SLOTS`` slots of 32 bytes, ``(key hash, tokens, last refill, rate)``, found by open
addressing on the key's hash. Time is ``CLOCK_MONOTONIC``, one clock for every process on the host.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import threading
import time

from conveyor.serving.auth import RateLimiter

log = logging.getLogger("conveyor.serving")

SLOTS = 4096
_SLOT = struct.Struct("<Qddd")      # key hash (0 = free), tokens, last refill (monotonic s), rate


def create_table(folder: str | None = None) -> str:
    """A new, zeroed table file (in /dev/shm when there is one); the caller removes it when done."""
    base = folder or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    fd, path = tempfile.mkstemp(prefix="conveyor-rate-", suffix=".table", dir=base)
    try:
        os.ftruncate(fd, SLOTS * _SLOT.size)
    finally:
        os.close(fd)
    return path


class SharedRateLimiter:
    """``RateLimiter``'s interface on the shared table: ``rate`` a second, bursts up to ``max(1, rate)``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, SLOTS * _SLOT.size)
        self._slots: dict[str, int] = {}
        self._thread_lock = threading.Lock()     # flock is per open file: threads of one process queue here
        self._overflow = RateLimiter()            # a full table: limit per worker rather than not at all

    def take(self, key_id: str, rate: float) -> float:
        """0.0 when allowed, else the seconds to wait."""
        cap = max(1.0, rate)
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                offset = self._slots.get(key_id)
                if offset is None:
                    offset = self._find(key_id, cap, rate)
                    if offset is None:
                        return self._overflow.take(key_id, rate)
                    self._slots[key_id] = offset
                h, tokens, at, _ = _SLOT.unpack_from(self._map, offset)
                now = time.monotonic()
                tokens = min(cap, tokens + max(0.0, now - at) * rate)
                if tokens >= 1.0:
                    _SLOT.pack_into(self._map, offset, h, tokens - 1.0, now, rate)
                    return 0.0
                _SLOT.pack_into(self._map, offset, h, tokens, now, rate)
                return (1.0 - tokens) / rate
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _find(self, key_id: str, cap: float, rate: float) -> int | None:
        """The slot of ``key_id``, claiming a free one (full bucket) the first time any worker sees the key."""
        h = int.from_bytes(hashlib.blake2b(key_id.encode(), digest_size=8).digest(), "little") or 1
        for probe in range(SLOTS):
            offset = ((h + probe) % SLOTS) * _SLOT.size
            found = _SLOT.unpack_from(self._map, offset)[0]
            if found == h:
                return offset
            if found == 0:
                _SLOT.pack_into(self._map, offset, h, cap, time.monotonic(), rate)
                return offset
        log.warning("the shared rate-limit table is full (%d keys); key %s is limited per worker", SLOTS, key_id)
        return None

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
