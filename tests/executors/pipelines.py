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
