"""Sources as steps: the output is an Arrow table artifact whose lineage names the source (no
secret), and incremental reads advance their watermark only when the run (or block) succeeded."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import conveyor as cv
from conveyor.errors import StepFailed


@cv.step
def count_rows(table: pa.Table, fail: bool = False) -> int:
    if fail:
        raise ValueError("the consuming step failed")
    return table.num_rows


@cv.pipeline
def ingest_files(location: str, fail: bool = False):
    rows = cv.data.read_step(location, watermark="events", columns=["id"])
    return count_rows(rows, fail)


@cv.pipeline
def ingest_sql(url: str, fail: bool = False):
    # the URL has no password: it comes from the environment, so it is in no run parameter either
    rows = cv.data.read_step(url, name="read_users", watermark=True, table="users", incremental="updated_at",
                             password_secret="env:SHOP_DB_PASSWORD")
    return count_rows(rows, fail)


def _write(folder: Path, name: str, ids: range, mtime: float) -> None:
    pq.write_table(pa.table({"id": list(ids)}), folder / name)
    os.utime(folder / name, (mtime, mtime))


def _source_artifact(client, run_id: str, step: str):
    return next(rec for s, _name, rec in client.metadata.artifacts.for_run(run_id) if s == step)


def test_files_step_reads_only_new_files_and_a_failed_run_does_not_advance(client, tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    _write(folder, "a.parquet", range(0, 10), 1_700_000_000)
    _write(folder, "b.parquet", range(10, 15), 1_700_000_100)
    first = ingest_files.run(location=str(folder), client=client)
    assert first.output("count_rows") == 15
    record = _source_artifact(client, first.id, "read")
    assert record.meta["source"] == f"files {folder} columns=id" and record.meta["shape"] == [15, 1]
    assert client.metadata.tracking.params(first.id)["read.source"] == f"files {folder} columns=id"
    assert first.output("read").column("id").to_pylist() == list(range(15))

    _write(folder, "c.parquet", range(100, 103), 1_700_000_200)
    with pytest.raises(StepFailed, match="the consuming step failed"):
        ingest_files.run(location=str(folder), fail=True, client=client)   # read c, then failed
    again = ingest_files.run(location=str(folder), client=client)
    assert again.output("count_rows") == 3                                 # c again: nothing was lost
    assert ingest_files.run(location=str(folder), client=client).output("count_rows") == 0

    # a malformed new file fails the read step: no output registered, the watermark stays
    (folder / "d.csv").write_text("id\n1\n")
    (folder / "e.parquet").write_bytes(b"PAR1 not really parquet")
    os.utime(folder / "e.parquet", (1_700_000_300, 1_700_000_300))
    with pytest.raises(StepFailed, match=r"e\.parquet.*truncated or not Parquet"):
        ingest_files.run(location=str(folder / "*.parquet"), client=client)
    failed = client.list_runs(limit=1)[0]
    assert failed.status == "failed" and client.metadata.artifacts.for_run(failed.id) == []
    mark = client.metadata.watermarks.current("ingest_files", "events")
    assert mark.value == {"mtime": 1_700_000_200.0, "paths": [str(folder / "c.parquet")]}


@pytest.mark.slow
def test_sql_step_keeps_its_watermark_and_never_shows_the_password(client, mariadb_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.databases import MARIADB_PASSWORD

    monkeypatch.setenv("SHOP_DB_PASSWORD", MARIADB_PASSWORD)
    bare = mariadb_url.replace(f":{MARIADB_PASSWORD}@", "@")
    engine = sa.create_engine(mariadb_url)
    t0 = dt.datetime(2024, 5, 1)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id INT PRIMARY KEY, updated_at DATETIME(6))"))
        conn.execute(sa.text("INSERT INTO users VALUES (:i, :t)"),
                     [{"i": i, "t": t0 + dt.timedelta(hours=i)} for i in range(20)])
    first = ingest_sql.run(url=bare, client=client)
    assert first.output("count_rows") == 20
    source = _source_artifact(client, first.id, "read_users").meta["source"]
    assert source.startswith("sql mysql+pymysql://conveyor@127.0.0.1:") and source.endswith("table users")
    assert MARIADB_PASSWORD not in str(client.metadata.tracking.params(first.id))
    assert MARIADB_PASSWORD not in str(client.metadata.runs.get(first.id).parameters)   # the URL parameter
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users VALUES (100, :t), (101, :t2)"),
                     {"t": t0 + dt.timedelta(days=5), "t2": t0 + dt.timedelta(days=6)})
    with pytest.raises(StepFailed):
        ingest_sql.run(url=bare, fail=True, client=client)
    assert ingest_sql.run(url=bare, client=client).output("count_rows") == 2
    marks = client.metadata.watermarks.current("ingest_sql", source)
    assert marks.value == {"type": "datetime", "value": (t0 + dt.timedelta(days=6)).isoformat()}
    # a password in the URL itself is masked wherever the source is shown, and so is a wrong one
    shown = cv.data.open_source(mariadb_url, table="users")
    assert MARIADB_PASSWORD not in shown.describe() and ":***@" in shown.describe()
    monkeypatch.setenv("SHOP_DB_PASSWORD", "wrong-Password-1")
    with pytest.raises(StepFailed) as caught:
        ingest_sql.run(url=bare, client=client)
    assert "Access denied" in str(caught.value) and "wrong-Password-1" not in str(caught.value)
    logs = " ".join(str(x) for x in client.metadata.steps.logs(caught.value.run.id, "read_users"))
    assert "wrong-Password-1" not in logs and MARIADB_PASSWORD not in logs
    engine.dispose()


def test_incremental_block_commits_only_when_it_succeeds(client, tmp_path: Path) -> None:
    _write(tmp_path, "a.parquet", range(5), 1_700_000_000)
    with pytest.raises(RuntimeError):
        with cv.data.incremental(cv.data.open_source(str(tmp_path)), pipeline="nightly", client=client) as src:
            assert src.read().num_rows == 5
            raise RuntimeError("loading failed")
    with cv.data.incremental(cv.data.open_source(str(tmp_path)), pipeline="nightly", client=client) as src:
        assert src.read().num_rows == 5                 # read again: the failed block committed nothing
    _write(tmp_path, "b.parquet", range(5, 7), 1_700_000_500)
    with cv.data.incremental(cv.data.open_source(str(tmp_path)), pipeline="nightly", client=client) as src:
        assert src.read().column("id").to_pylist() == [5, 6]
    with cv.data.incremental(cv.data.open_source(str(tmp_path)), pipeline="other", client=client) as src:
        assert src.read().num_rows == 7                 # each pipeline keeps its own watermark


def test_a_filter_that_cannot_be_stored_is_refused_when_the_pipeline_is_built() -> None:
    import pyarrow.compute as pc

    from conveyor.errors import PipelineDefinitionError

    @cv.pipeline
    def expression_filter():
        return cv.data.read_step("data/", filter=pc.field("id") > 1)

    with pytest.raises(PipelineDefinitionError, match="Write it as text"):
        expression_filter.build()
