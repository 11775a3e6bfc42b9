"""Pipelines the executor tests run; module-level so worker processes can import them.

Steps that start processes record every descendant they have when they return, in the folder
named by ``CVTEST_PIDS``, so a test can check afterwards that none of them survived.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import conveyor as cv
from tests.processes import descendants


def record(name: str) -> None:
    folder = Path(os.environ["CVTEST_PIDS"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(" ".join(str(p) for p in sorted(descendants(os.getpid()))))


@cv.step(cache=False)
def loky_cv() -> float:
    """scikit-learn's cross validation on loky worker processes, the reusable executor left alive."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    scores = cross_val_score(LogisticRegression(), X, y, cv=3, n_jobs=2)
    record("loky")
    return float(scores.mean())


@cv.step(cache=False)
def pool_left() -> int:
    """A multiprocessing pool started and never closed."""
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(2)
    total = sum(pool.map(abs, [-1, -2, -3]))
    record("pool")
    pool_left.keep = pool   # type: ignore[attr-defined]  (no garbage collection before the step ends)
    return total


stop_thread = threading.Event()


@cv.step(cache=False)
def thread_left() -> str:
    """A non-daemon thread that outlives the step."""
    threading.Thread(target=stop_thread.wait, args=(1000,), daemon=False, name="left-behind").start()
    return "left"


@cv.step(cache=False)
def child_left() -> int:
    """A child process (``sleep 1000``) started and never waited for."""
    proc = subprocess.Popen(["sleep", "1000"])
    record("sleep")
    return proc.pid


@cv.pipeline
def leaves_things():
    loky_cv()
    pool_left()
    thread_left()
    child_left()


@cv.pipeline
def leaves_threads_and_pools():
    pool_left()
    thread_left()


def _journal(line: str) -> None:
    with open(os.environ["CVTEST_JOURNAL"], "a") as fh:
        fh.write(line + "\n")


@cv.step(timeout=1.5, retries=1, backoff=0.01, retry_on=(cv.StepTimeout,), cache=False)
def slow_first(seconds: float) -> str:
    """The first attempt overruns its timeout and writes a marker afterwards; the retry is quick."""
    attempt = cv.get_step_context().attempt
    if attempt == 1:
        _journal(f"start 1 {os.getpid()}")
        time.sleep(seconds)
    else:   # is the first attempt still running (no end marker yet, and its process alive)?
        lines = Path(os.environ["CVTEST_JOURNAL"]).read_text().split("\n")
        first_pid = int(lines[0].split()[2])
        overlap = "end 1" not in lines and first_pid in {os.getpid()} | _live_pids()
        _journal(f"start {attempt} {os.getpid()} overlap={overlap}")
    _journal(f"end {attempt}")
    return "done"


def _live_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b") Z" not in (entry / "stat").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


@cv.step(timeout=1.0, retries=2, backoff=0.01, retry_on=(ValueError,), cache=False)
def slow_not_retried(seconds: float) -> str:
    """Times out; a timeout is not in retry_on, so it must not be retried."""
    _journal(f"start {cv.get_step_context().attempt}")
    time.sleep(seconds)
    return "done"


@cv.pipeline
def timed_out_retry(seconds: float = 5.0):
    slow_first(seconds)


@cv.pipeline
def timed_out_no_retry(seconds: float = 4.0):
    slow_not_retried(seconds)


@cv.step(cache=False)
def exits_hard(code: int) -> int:
    """Ends its own process without returning (like a crash in native code), after forking a child
    that holds every file descriptor it had (the result pipe among them) and sleeps."""
    import multiprocessing

    multiprocessing.get_context("fork").Process(target=time.sleep, args=(1000,)).start()
    os._exit(code)


@cv.pipeline
def hard_exit(code: int = 3):
    exits_hard(code)


@cv.step(cache=False)
def blocks_with_child() -> int:
    """Starts ``sleep 1000``, says so in the journal, then blocks until its process is stopped."""
    proc = subprocess.Popen(["sleep", "1000"])
    _journal(f"running {os.getpid()} {proc.pid}")
    while True:
        time.sleep(1)


@cv.pipeline
def blocks():
    blocks_with_child()


# --- the conformance suite's pipelines -------------------------------------------------------
# They take the folder they write to as a parameter: workers of a cluster that outlives the test
# (Dask, Ray) do not see the test's environment variables.

def bump_in(folder: str, name: str) -> int:
    """Record one execution of ``name`` under ``folder``; the number of executions so far."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / name, "a") as fh:
        fh.write("x")
    return len((Path(folder) / name).read_text())


def note(folder: str, line: str) -> None:
    """Append a line to ``folder``/journal (one write: lines from processes do not interleave)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(folder) / "journal", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def journal(folder: str) -> list[str]:
    path = Path(folder) / "journal"
    return path.read_text().splitlines() if path.exists() else []


@cv.step(cache=False)
def big_array(mb: int) -> object:
    """A float64 array of ``mb`` MiB: too large to pass inline, it goes through the artifact store."""
    import numpy as np

    return np.full(mb * 131072, 0.5)


@cv.step(cache=False)
def array_total(arr: object) -> float:
    import numpy as np

    assert isinstance(arr, np.ndarray)
    return float(arr.sum())


@cv.step(cache=False)
def element_list(n: int) -> list:
    return list(range(n))


@cv.step(cache=False)
def bounded(i: int, folder: str, n: int) -> int:
    """Records its interval; waits (up to 30 s) until another element overlaps it or every other
    element has ended, so that whatever limit holds is actually reached."""
    note(folder, f"start {i} {time.monotonic()!r}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = journal(folder)
        started = {ln.split()[1] for ln in lines if ln.startswith("start ")}
        ended = {ln.split()[1] for ln in lines if ln.startswith("end ")}
        if started - ended - {str(i)} or (len(started) == n and started - ended == {str(i)}):
            break
        time.sleep(0.02)
    note(folder, f"end {i} {time.monotonic()!r}")
    return i * i


@cv.step(cache=False)
def combine(squares: list, total: float) -> dict:
    return {"squares": squares, "total": total}


@cv.step(cache=False)
def taken(joined: dict) -> str:
    return f"taken {len(joined['squares'])}"


@cv.step(cache=False)
def not_taken(joined: dict) -> str:
    return "not taken"


@cv.pipeline
def conformance(folder: str, mb: int = 50, n: int = 8, limit: int = 2):
    """Fan-out with a concurrency limit, a join, a large output between steps and two conditions."""
    total = array_total(big_array(mb))
    squares = bounded.map(i=element_list(n), folder=cv.unmapped(folder), n=cv.unmapped(n),
                          max_parallel=limit)
    joined = combine(squares, total)
    with cv.when(total > 0):
        taken(joined)
    with cv.when(total < 0):
        not_taken(joined)


@cv.step(retries=2, backoff=0.01, cache=False)
def flaky_in(folder: str) -> str:
    """Fails twice with a transient error, then succeeds."""
    if bump_in(folder, "flaky") < 3:
        raise ConnectionError("transient")
    return "ok"


@cv.step(retries=3, backoff=0.01, retry_on=ConnectionError, cache=False)
def permanent_in(folder: str) -> str:
    """Fails with an error that retry_on does not name: never retried."""
    bump_in(folder, "permanent")
    raise KeyError("permanent")


@cv.pipeline
def retried(folder: str):
    flaky_in(folder)


@cv.pipeline
def not_retried(folder: str):
    permanent_in(folder)


@cv.step(timeout=1.5, retries=1, backoff=0.01, retry_on=(cv.StepTimeout,), cache=False)
def overruns_once(folder: str, seconds: float) -> str:
    """The first attempt overruns its timeout; the retry (a timeout is in retry_on) returns at once."""
    attempt = cv.get_step_context().attempt
    note(folder, f"once start {attempt}")
    if attempt == 1:
        time.sleep(seconds)
    note(folder, f"once end {attempt}")
    return f"attempt {attempt}"


@cv.step(timeout=1.0, retries=2, backoff=0.01, retry_on=(ValueError,), cache=False)
def overruns(folder: str, seconds: float) -> str:
    """Overruns its timeout; retry_on does not name timeouts, so it fails without a retry."""
    note(folder, f"overruns start {cv.get_step_context().attempt}")
    time.sleep(seconds)
    return "done"


@cv.pipeline
def timeouts(folder: str, seconds: float = 3.0):
    overruns_once(folder, seconds)
    overruns(folder, seconds)


@cv.step(cache=False)
def blocks_in(folder: str) -> int:
    """Says which process runs it, then blocks until that process is stopped."""
    note(folder, f"running {os.getpid()}")
    while True:
        time.sleep(0.5)


@cv.pipeline
def blocking(folder: str):
    blocks_in(folder)


@cv.step(cache=False)
def counted(folder: str, name: str, after: int = 0) -> int:
    return bump_in(folder, name) + after


@cv.step(cache=False)
def hangs_first(x: int, folder: str) -> int:
    """The first execution says which process runs it and blocks; later executions return at once."""
    if bump_in(folder, "hangs") == 1:
        note(folder, f"running {os.getpid()}")
        while True:
            time.sleep(0.5)
    return x + 100


@cv.pipeline
def killed_midway(folder: str):
    first = counted(folder, "first")
    middle = hangs_first(first, folder)
    counted(folder, "last", middle)


@cv.step(gpus=1, cache=False)
def needs_a_gpu(x: int) -> int:
    return x


@cv.pipeline
def gpu_step():
    needs_a_gpu(1)


@cv.step(cache=False)
def kills_its_worker(folder: str) -> str:
    """The first execution kills the process that runs it (the Dask worker); the next one returns."""
    import signal

    if bump_in(folder, "kills") == 1:
        os.kill(os.getppid(), signal.SIGKILL)   # an attempt is a child of the worker process
        time.sleep(60)
    return "survived"


@cv.pipeline
def worker_dies(folder: str):
    kills_its_worker(folder)
