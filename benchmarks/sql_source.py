"""1,000,000 rows x 10 columns from PostgreSQL into Arrow.

  floor      ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` through psycopg into memory, parsed by
             ``pyarrow.csv.read_csv``
  conveyor   ``SQLSource(url, table="bench").read()``: the ADBC path (``conveyor[sql-fast]``)
  conveyor_sqlalchemy  the same with ``fast=False``: SQLAlchemy's server-side cursor, rows to Arrow
  psycopg_binary_copy  the other fast path considered: ``COPY ... (FORMAT binary)`` decoded by
             psycopg (``copy.rows()`` with the column types), rows to Arrow columns
  pandas     ``pandas.read_sql`` over a SQLAlchemy engine (to a DataFrame: its own end product,
             not counting a conversion to Arrow)
  connectorx ``connectorx.read_sql(..., return_type="arrow")`` in its own virtualenv, if it installs

Each is the median of BENCH_REPEATS (default 5) rounds after a warm-up round, the readers taking
turns within a round, in one run against one server
(started here on a free loopback port, as the tests start it; or ``--url`` for an existing one).
Prints one JSON object: seconds per reader and the ratios the issue sets as targets
(conveyor / floor <= 1.3, pandas / conveyor >= 3).

Run from the repository root: ``python benchmarks/sql_source.py [--url postgresql+psycopg://...]``.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
QUERY = "SELECT * FROM bench"

CONNECTORX_SCRIPT = """
import json, statistics, sys, time
import connectorx as cx
uri, query, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
cx.read_sql(uri, query, return_type="arrow")
times = []
for _ in range(repeats):
    t = time.perf_counter(); table = cx.read_sql(uri, query, return_type="arrow"); times.append(time.perf_counter() - t)
print(json.dumps({"seconds": statistics.median(times), "rows": table.num_rows}))
"""


def log(message: str) -> None:
    print(f"[sql_source] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port (as tests/conftest.py starts one)."""
    from tests.conftest import _as_postgres, free_port

    bin_dir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    data = Path(tempfile.mkdtemp(prefix="conveyor-bench-pg-"))
    data.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "conveyor",
                                 "--no-sync"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
                                 "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://conveyor@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def fill(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench")
        conn.execute("""CREATE TABLE bench (id bigint PRIMARY KEY, a double precision, b double precision,
                        c double precision, qty integer, store integer, name text, country text,
                        created_at timestamp, active boolean)""")
        conn.execute(f"""INSERT INTO bench SELECT g, random(), random() * 100, g / 7.0, (g % 1000)::int,
                         (g % 37)::int, 'customer-' || g, (ARRAY['FR','DE','US','JP'])[1 + g % 4],
                         timestamp '2024-01-01' + g * interval '1 second', g % 2 = 0
                         FROM generate_series(1, {ROWS}) AS g""")
        conn.execute("VACUUM ANALYZE bench")


def timed_round_robin(readers: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Each reader once as a warm-up, then REPEATS rounds of every reader in turn: on a shared
    machine, load that comes and goes falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in readers}
    for round_ in range(REPEATS + 1):
        for name, fn in readers.items():
            log(f"round {round_}/{REPEATS}: {name}")
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            rows = out.num_rows if hasattr(out, "num_rows") else len(out)   # type: ignore[arg-type]
            assert rows == ROWS, (name, rows)
            if round_:
                times[name].append(elapsed)
            del out
    return times


def connectorx(uri: str) -> dict[str, object]:
    try:
        from tests.export.venvs import target_venv

        venv = target_venv("connectorx", ["connectorx>=0.4", "pyarrow>=15"])
    except Exception as exc:   # a peer that does not install is reported, not fatal
        return {"skipped": f"connectorx did not install: {type(exc).__name__}: {str(exc)[:200]}"}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", CONNECTORX_SCRIPT, uri, QUERY, str(REPEATS)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"skipped": f"connectorx failed: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(url: str) -> dict[str, object]:
    import pandas as pd
    import psycopg
    import pyarrow.csv as pcsv
    import sqlalchemy as sa

    from conveyor.data.sources.sql import SQLSource

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    log(f"filling {ROWS} rows x 10 columns")
    fill(dsn)

    def floor() -> object:
        buffer = io.BytesIO()
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY ({QUERY}) TO STDOUT (FORMAT csv, HEADER)") as copy:
                for chunk in copy:
                    buffer.write(chunk)
        buffer.seek(0)
        return pcsv.read_csv(buffer)

    def binary_copy() -> object:
        import pyarrow as pa

        types = ["int8", "float8", "float8", "float8", "int4", "int4", "text", "text", "timestamp", "bool"]
        names = ["id", "a", "b", "c", "qty", "store", "name", "country", "created_at", "active"]
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY ({QUERY}) TO STDOUT (FORMAT binary)") as copy:
                copy.set_types(types)
                rows = list(copy.rows())
        return pa.table({n: pa.array(col) for n, col in zip(names, zip(*rows), strict=True)})

    engine = sa.create_engine(url)
    readers: dict[str, Callable[[], object]] = {
        "floor_copy_csv": floor,
        "conveyor": lambda: SQLSource(url, table="bench").read(),
        "conveyor_sqlalchemy": lambda: SQLSource(url, table="bench", fast=False).read(),
        "psycopg_binary_copy": binary_copy,
        "pandas_read_sql": lambda: pd.read_sql(QUERY, engine),
    }
    times = timed_round_robin(readers)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    engine.dispose()
    log("timing connectorx (own virtualenv)")
    cx = connectorx(dsn)
    if "seconds" in cx:
        seconds["connectorx"] = float(cx["seconds"])   # type: ignore[arg-type]
    ratios = {
        "conveyor_vs_floor": seconds["conveyor"] / seconds["floor_copy_csv"],
        "pandas_vs_conveyor": seconds["pandas_read_sql"] / seconds["conveyor"],
        "conveyor_sqlalchemy_vs_floor": seconds["conveyor_sqlalchemy"] / seconds["floor_copy_csv"],
        "psycopg_binary_copy_vs_floor": seconds["psycopg_binary_copy"] / seconds["floor_copy_csv"],
    }
    if "connectorx" in seconds:
        ratios["connectorx_vs_conveyor"] = seconds["connectorx"] / seconds["conveyor"]
    return {"benchmark": "sql_source", "rows": ROWS, "columns": 10, "repeats": REPEATS,
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "best_seconds": {k: round(v, 4) for k, v in best.items()},
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "targets": {"conveyor_vs_floor_max": 1.3, "pandas_vs_conveyor_min": 3.0,
                        "met": ratios["conveyor_vs_floor"] <= 1.3 and ratios["pandas_vs_conveyor"] >= 3.0},
            **({"connectorx": cx["skipped"]} if "skipped" in cx else {})}


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--url"]:
        print(json.dumps(main(args[1])))
    else:
        with postgres() as server:
            print(json.dumps(main(server)))
