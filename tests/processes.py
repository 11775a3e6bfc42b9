"""The process table as the lifetime tests read it (Linux ``/proc``): who runs, who is whose child."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] != "Z":
                table[int(entry.name)] = int(fields[1])
    return table


def children(pid: int) -> set[int]:
    """Live, non-zombie children of ``pid``."""
    return {p for p, pp in parents().items() if pp == pid}


def descendants(root: int) -> set[int]:
    """Live, non-zombie descendants of ``root``, at any depth."""
    table = parents()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in table.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        return b") Z" not in Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
