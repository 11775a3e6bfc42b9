"""The prediction log's writer process: the same files as the writer thread, from shared memory, and
nothing lost or left behind when either process dies."""

from __future__ import annotations

import datetime as dt
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conveyor.errors import ConfigurationError
from conveyor.serving.log_writer import PREFIX, shared_folder
from conveyor.serving.prediction_log import PredictionLog, read_prediction_log
from conveyor.serving.schema import Batch

BASE = dt.datetime(2026, 3, 9, 13, 59, 58, tzinfo=dt.UTC).timestamp()


def _fill(log: PredictionLog, start: int, count: int) -> None:
    """Numeric requests of 1-4 rows over two endpoints and an hour boundary, and some text predictions."""
    for i in range(start, start + count):
        rows = 1 + i % 4
        endpoint = "a" if i % 3 else "b"
        if i % 10 == 7:       # the general path: text predictions, features as columns
            log.record(request_id=f"r{i}", ts=BASE + i * 0.01, endpoint=endpoint, model="m", version=2,
                       shadow=False, latency_ms=2.0, prediction=np.array(["yes"] * rows),
                       columns={"p": np.full(rows, float(i)), "q": np.arange(rows)})
            continue
        batch = Batch(None, rows, matrix=np.full((rows, 2), float(i)), names=("p", "q"),
                      dtypes=("float64", "int64"))
        log.record(request_id=f"r{i}", ts=BASE + i * 0.01, endpoint=endpoint, model="m", version=1,
                   shadow=i % 5 == 0, latency_ms=1.0, batch=batch, prediction=np.arange(rows) + i / 10)


def _rows(root: str) -> list[tuple]:
    out = []
    for endpoint in ("a", "b"):
        t = read_prediction_log(root, endpoint)
        cols = {n: t.column(n).to_pylist() for n in t.column_names}
        for k in range(t.num_rows):
            out.append((endpoint, cols["request_id"][k], cols["row"][k], cols["version"][k], cols["shadow"][k],
                        cols["feature.p"][k], cols["feature.q"][k], cols["prediction"][k],
                        cols.get("prediction_text", [None] * t.num_rows)[k], cols["hour"][k]))
    return sorted(out, key=repr)


def _our_blocks() -> list[str]:
    return glob.glob(os.path.join(shared_folder(), f"{PREFIX}{os.getpid()}-*"))


def test_the_writer_process_writes_what_the_writer_thread_writes(tmp_path) -> None:
    by = {}
    for writer in ("thread", "process"):
        root = str(tmp_path / writer)
        log = PredictionLog(root, interval_s=60, chunk_rows=64, row_group_rows=16, writer=writer)
        _fill(log, 0, 300)
        assert log.flush() > 0
        _fill(log, 300, 200)            # blocks reused after the first flush
        log.close()
        assert log.dropped_rows == 0 and log.written_files
        by[writer] = _rows(root)
    assert by["process"] == by["thread"]
    assert len(by["process"]) == sum(1 + i % 4 for i in range(500))
    assert {r[-1] for r in by["process"]} == {13, 14}          # both hours, each in its own partition
    assert _our_blocks() == []                                  # every shared block released on close


@pytest.mark.slow
def test_a_killed_writer_process_is_restarted_and_the_flush_retried(tmp_path) -> None:
    log = PredictionLog(str(tmp_path), interval_s=60, writer="process")
    _fill(log, 0, 50)
    assert log.flush() == sum(1 + i % 4 for i in range(50))
    os.kill(log._process.pid(), signal.SIGKILL)
    time.sleep(0.2)
    _fill(log, 50, 50)
    assert log.flush() == sum(1 + i % 4 for i in range(50, 100))
    assert log._process.restarts == 1
    log.close()
    assert log.dropped_rows == 0
    assert len(_rows(str(tmp_path))) == sum(1 + i % 4 for i in range(100))


@pytest.mark.slow
def test_when_the_server_dies_its_writer_exits_and_removes_the_shared_blocks(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from conveyor.serving.prediction_log import PredictionLog
        from conveyor.serving.schema import Batch
        log = PredictionLog({str(tmp_path)!r}, interval_s=60, writer="process")
        for i in range(20):
            log.record(request_id=str(i), ts=time.time(), endpoint="a", model="m", version=1, shadow=False,
                       latency_ms=1.0, prediction=np.zeros(1),
                       batch=Batch(None, 1, matrix=np.zeros((1, 1)), names=("x",), dtypes=("float64",)))
        log.flush()
        _fill = [log.record(request_id="late", ts=time.time(), endpoint="a", model="m", version=1, shadow=False,
                            latency_ms=1.0, prediction=np.zeros(1),
                            batch=Batch(None, 1, matrix=np.zeros((1, 1)), names=("x",), dtypes=("float64",)))]
        print(log._process.pid(), flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    assert glob.glob(os.path.join(shared_folder(), f"{PREFIX}{proc.pid}-*"))      # a block still open
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _exists(child):
        time.sleep(0.05)
    assert not _exists(child)
    assert glob.glob(os.path.join(shared_folder(), f"{PREFIX}{proc.pid}-*")) == []
    assert read_prediction_log(str(tmp_path), "a").num_rows == 20       # what was flushed stays


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:      # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_an_unknown_writer_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="thread, process"):
        PredictionLog("/tmp", writer="fork")
