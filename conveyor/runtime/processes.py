"""Process lifetimes: tie a worker to its parent, and stop whatever a piece of user code started.

A step body or a model may start processes of its own (joblib/loky workers, a multiprocessing
pool, a ``subprocess``), threads, or leave named semaphores behind. The code that runs such a body
in a child process uses these functions so that nothing outlives the work:

- ``tie_to_parent`` makes a worker exit when the process that started it dies (Linux
  ``PR_SET_PDEATHSIG`` plus, where asked or where that is unavailable, a watchdog thread);
- ``become_subreaper`` makes orphaned descendants reparent to this process, so they can be found;
- ``release_worker_pools`` shuts down loky's reusable executor and multiprocessing children the
  way their own exit handlers would (so their semaphores are unlinked, not leaked);
- ``stop_tree`` stops a process, its process group and every descendant, bounded in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    # the symbols already loaded into this process (libc among them): no library search, which
    # would start a subprocess (ldconfig) on every call
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return _libc().prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def tie_to_parent(owner_pid: int, *, watchdog: bool = False, interval: float = 0.5,
                  signum: int = signal.SIGKILL) -> bool:
    """Exit this process when its parent (or ``owner_pid``) dies; True if the kernel enforces it.

    ``PR_SET_PDEATHSIG`` fires when the parent *thread* that forked us ends, so callers start
    workers from a thread that lives as long as the work. The watchdog thread polls the parent pid
    and ``owner_pid`` (the process that asked for the worker, which differs from the parent when a
    forkserver started it); it runs when ``watchdog`` is set or when the kernel cannot help.
    ``signum`` is what the kernel sends (SIGTERM lets a process clean up what it started first).
    """
    parent = os.getppid()
    enforced = _prctl(_PR_SET_PDEATHSIG, int(signum))
    if os.getppid() != parent or not pid_alive(owner_pid):   # the parent died before prctl took effect
        os._exit(1)
    if watchdog or not enforced:
        def watch() -> None:
            while os.getppid() == parent and pid_alive(owner_pid):
                time.sleep(interval)
            os._exit(1)

        threading.Thread(target=watch, name="conveyor-parent-watchdog", daemon=True).start()
    return enforced


_subreaper = False


def become_subreaper() -> bool:
    """Let orphaned descendants reparent to this process (Linux), so ``stop_tree`` still finds them.

    Only for a process whose every child is work it runs (an executor's worker): ``stop_tree``
    then also stops orphans that were adopted this way.
    """
    global _subreaper
    _subreaper = _subreaper or _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    return _subreaper


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, dead but not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                       # someone else's process: it exists
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True                       # no /proc (macOS): the signal check is all there is


def children_of(pids: set[int]) -> set[int]:
    """Every live descendant of ``pids`` (read from /proc on Linux; empty elsewhere)."""
    parents: dict[int, int] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return set()
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces; fields after it are fixed
        fields = stat[stat.rfind(")") + 2:].split()
        if fields and fields[0] != "Z":
            parents[int(name)] = int(fields[1])
    found: set[int] = set()
    frontier = set(pids)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        found |= frontier
    return found


def stop_tree(pid: int, *, grace: float = 5.0) -> None:
    """Stop our child ``pid`` (SIGTERM, SIGKILL after ``grace`` seconds), its process group and descendants.

    ``pid`` is expected to lead its own process group (``os.setsid`` in the child); descendants
    that moved to another group are found through /proc, and orphans that reparented to this
    process (see ``become_subreaper``) are stopped too. The child is reaped only at the end, so its
    pid and group id cannot be reused by an unrelated process while signals are sent.
    """
    # an exited child has no descendants of its own left: they are in its group or were adopted
    descendants = set() if exited(pid) else children_of({pid})
    if not exited(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        wait_exit(pid, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    descendants |= children_of({pid} | descendants)
    if _subreaper:   # orphans of the attempt were adopted by this process: they are children of ours now
        descendants |= children_of({os.getpid()})
    for other in {pid} | descendants:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(other, signal.SIGKILL)
    reap(pid)
    if _subreaper:
        reap_orphans()


def exited(pid: int) -> bool:
    """True once our child ``pid`` has exited (it stays a zombie, unreaped, until ``reap``)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for our child ``pid`` to exit (without reaping it); True if it did."""
    if exited(pid):
        return True
    if hasattr(os, "pidfd_open"):   # Linux: the kernel tells us the moment it exits
        import select

        try:
            fd = os.pidfd_open(pid)
        except OSError:
            pass
        else:
            try:
                select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
            return exited(pid)
    deadline = time.monotonic() + timeout
    pause = 0.001
    while not exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(0.05, pause * 2)
    return True


def reap(pid: int, timeout: float = 5.0) -> int | None:
    """Collect the exit status of our child ``pid`` (waiting at most ``timeout``); its wait status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def reap_orphans() -> None:
    """Collect exit statuses of orphans that reparented to this subreaper, without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def release_worker_pools(timeout: float = 10.0) -> None:
    """Shut down worker pools that user code left: loky's reusable executor, multiprocessing children.

    Done as their own exit handlers would do it, so named semaphores are unlinked (no
    "leaked semaphore" warnings) and no pool waits minutes for idle workers to time out.
    """
    for name in ("joblib.externals.loky.reusable_executor", "loky.reusable_executor"):
        module = sys.modules.get(name)
        executor = getattr(module, "_executor", None) if module is not None else None
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.shutdown(wait=True, kill_workers=True)
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    import multiprocessing.util

    with contextlib.suppress(Exception):
        multiprocessing.util._run_finalizers(0)   # pools terminate their own workers first
    children = mp.active_children()
    for child in children:   # non-daemon children would make the exit join below wait for ever
        with contextlib.suppress(Exception):
            child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        with contextlib.suppress(Exception):
            child.join(max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(Exception):
        multiprocessing.util._exit_function()   # pool finalizers and semaphore cleanup, as at exit
