"""The pipeline the fault-injection suite kills, starves and disconnects.

Small and fast on purpose (each step takes milliseconds) so a trial is cheap, yet it has what a
crash can break: a fan-out, a join, artifacts in the artifact store, and a ledger file to which
every step body appends its node name once it has done its work. A step whose record says it
completed must never append again after a resume.

Environment: ``CVFAULT_LEDGER`` (the ledger file), ``CVFAULT_LOADED`` (a file written when this
module is imported, so a test can wait for the process to be alive instead of sleeping),
``CVFAULT_GATE`` (step ``big`` returns only once this file exists, so a test can inject a fault
at the exact moment before an output is written).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import conveyor as cv

if os.environ.get("CVFAULT_LOADED"):
    Path(os.environ["CVFAULT_LOADED"]).write_text(str(os.getpid()))

STEP_SECONDS = float(os.environ.get("CVFAULT_STEP_SECONDS", "0.01"))


def _ledger(what: str) -> None:
    path = os.environ.get("CVFAULT_LEDGER")
    if path:
        with open(path, "a") as fh:      # one short O_APPEND write per line: lines never interleave
            fh.write(what + "\n")


def _payload(seed: str, size: int) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@cv.step
def source(n: int) -> list:
    time.sleep(STEP_SECONDS)
    _ledger(cv.get_step_context().node_name)
    return list(range(n))


@cv.step
def chunk(i: int, size: int) -> bytes:
    time.sleep(STEP_SECONDS)
    data = _payload(f"chunk-{i}", size)
    _ledger(cv.get_step_context().node_name)
    return data


@cv.step
def join(parts: list) -> bytes:
    time.sleep(STEP_SECONDS)
    _ledger(cv.get_step_context().node_name)
    return b"".join(parts)


@cv.step
def fingerprint(blob: bytes) -> bytes:
    time.sleep(STEP_SECONDS)
    _ledger(cv.get_step_context().node_name)
    return hashlib.sha256(blob).hexdigest().encode() * 8


@cv.step
def big(blob: bytes, size: int) -> bytes:
    """An output of ``size`` bytes (the full-disk trial makes it larger than the disk)."""
    time.sleep(STEP_SECONDS)
    data = _payload(hashlib.sha256(blob).hexdigest(), size)
    _ledger(cv.get_step_context().node_name)
    gate = os.environ.get("CVFAULT_GATE")
    while gate and not os.path.exists(gate):    # held until the test has injected its fault
        time.sleep(0.01)
    return data


@cv.step
def summary(fp: bytes, large: bytes) -> bytes:
    time.sleep(STEP_SECONDS)
    _ledger(cv.get_step_context().node_name)
    return fp + hashlib.sha256(large).hexdigest().encode()


@cv.pipeline
def faulty(n: int = 4, size: int = 2048, big_size: int = 4096):
    items = source(n)
    parts = chunk.map(i=items, size=cv.unmapped(size))
    blob = join(parts)
    fp = fingerprint(blob)
    large = big(blob, big_size)
    summary(fp, large)
