"""Pipelines for the resource-accounting tests (module-level, so the process executor imports them)."""

from __future__ import annotations

import time

import conveyor as cv


@cv.step(cache=False)
def heavy(mb: int, cpu_s: float) -> int:
    """Holds ``mb`` MiB of touched memory and burns about ``cpu_s`` seconds of CPU."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):   # touch every page, so it is resident
        block[i] = 1
    end, n = time.thread_time() + cpu_s, 0
    while time.thread_time() < end:
        n += 1
    return len(block)


@cv.step(cache=False)
def payload(kib: int) -> bytes:
    """Bytes too large to stay inline: stored as an object in the artifact store."""
    return b"x" * (kib * 1024)


@cv.step(cache=False)
def read_back(data: bytes) -> int:
    return len(data)


@cv.pipeline
def heavy_pipeline(mb: int = 100, cpu_s: float = 0.3):
    heavy(mb, cpu_s)


@cv.pipeline
def bytes_pipeline(kib: int = 256):
    read_back(payload(kib))
