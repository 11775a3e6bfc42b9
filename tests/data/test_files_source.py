"""The files source: formats, globs, Hive partitions, pushed-down projection and filters, streaming,
incremental listing, malformed files, and one round on S3 (moto)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.json  # noqa: F401 - registers the JSON dataset format
import pyarrow.parquet as pq
import pytest

from conveyor import data
from conveyor.data.sources.files import FileSource
from conveyor.errors import ConfigurationError, SourceReadError


def _orders(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({"id": ids, "amount": [float(i % 50) for i in ids],
                     "country": [("FR", "DE", "US")[i % 3] for i in ids]})


def _partitioned(root: Path) -> None:
    for day, start in (("2024-01-01", 0), ("2024-01-02", 1000)):
        folder = root / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(_orders(1000, start), folder / "part-0.parquet", row_group_size=100)
    (root / "_SUCCESS").write_text("")           # writers' bookkeeping is not data


def test_parquet_folder_with_hive_partitions_projects_filters_and_streams(tmp_path: Path) -> None:
    _partitioned(tmp_path / "orders")
    source = data.open_source(str(tmp_path / "orders"), columns=["id", "amount", "day"],
                              filter="amount >= 45 and day == '2024-01-02' and country in ('FR', 'DE')",
                              batch_size=16)
    assert isinstance(source, FileSource)
    batches = list(source.batches())
    assert len(batches) > 1 and all(b.num_rows <= 16 for b in batches)   # streamed, not one table
    table = pa.Table.from_batches(batches)
    assert table.column_names == ["id", "amount", "day"]
    expected = [i for i in range(1000, 2000) if i % 50 >= 45 and i % 3 in (0, 1)]
    assert sorted(table.column("id").to_pylist()) == expected
    assert set(table.column("day").to_pylist()) == {"2024-01-02"}
    # the same filter as tuples and as a pyarrow expression, through a glob
    glob = str(tmp_path / "orders" / "*" / "*.parquet")
    as_tuples = data.read(glob, filter=[("day", "=", "2024-01-02"), ("amount", ">=", 45),
                                        ("country", "in", ["FR", "DE"])])
    as_expr = data.read(glob, filter=(pc.field("day") == "2024-01-02") & (pc.field("amount") >= 45)
                        & pc.field("country").isin(["FR", "DE"]))
    assert sorted(as_tuples.column("id").to_pylist()) == sorted(as_expr.column("id").to_pylist()) == expected
    assert "day" in as_tuples.column_names and as_tuples.num_rows == len(expected)


def test_csv_json_lines_and_feather_read_the_same_rows(tmp_path: Path) -> None:
    table = _orders(300)
    pcsv.write_csv(table, tmp_path / "a.csv")
    with open(tmp_path / "a.jsonl", "w") as out:
        for row in table.to_pylist():
            out.write(__import__("json").dumps(row) + "\n")
    feather.write_feather(table, tmp_path / "a.feather")
    for name in ("a.csv", "a.jsonl", "a.feather"):
        got = data.read(str(tmp_path / name), columns=["id", "country"], filter="id < 10")
        assert got.column("id").to_pylist() == list(range(10)), name
        assert got.column("country").to_pylist()[:3] == ["FR", "DE", "US"], name


def test_a_filter_string_cannot_run_code_and_bad_options_say_how_to_fix(tmp_path: Path) -> None:
    pq.write_table(_orders(10), tmp_path / "x.parquet")
    with pytest.raises(ConfigurationError, match="only conditions|cannot be used"):
        data.read(str(tmp_path / "x.parquet"), filter="__import__('os').system('true')")
    with pytest.raises(ConfigurationError, match="has no column 'nope'.*id, amount, country"):
        data.read(str(tmp_path / "x.parquet"), columns=["nope"])
    with pytest.raises(SourceReadError, match="does not exist. Check the path"):
        data.read(str(tmp_path / "missing.parquet"))
    with pytest.raises(SourceReadError, match="no data files found"):
        data.read(str(tmp_path / "missing" / "*.parquet"))


def test_a_ragged_csv_row_names_the_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "orders.csv"
    bad.parent.mkdir()
    bad.write_text("id,amount,country\n1,2.0,FR\n2,3.0,DE,EXTRA\n3,4.0,US\n")
    with pytest.raises(SourceReadError) as caught:
        data.read(str(tmp_path / "in"))
    message = str(caught.value)
    assert f"file {bad}, line 3:" in message and "Expected 3 columns, got 4" in message
    assert "invalid_row" in message                      # the fix
    ok = data.read(str(tmp_path / "in"), csv={"invalid_row": "skip"})
    assert ok.column("id").to_pylist() == [1, 3]


def test_a_truncated_parquet_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(_orders(100), folder / "a.parquet")
    pq.write_table(_orders(5000, 100), folder / "b.parquet")
    whole = (folder / "b.parquet").read_bytes()
    (folder / "b.parquet").write_bytes(whole[: len(whole) // 2])      # cut in the middle
    source = data.open_source(str(folder))
    with pytest.raises(SourceReadError) as caught:
        source.read()
    message = str(caught.value)
    assert str(folder / "b.parquet") in message and "truncated" in message
    assert "files " + str(folder) in message                 # the source, as describe() shows it


def test_incremental_listing_reads_only_new_or_changed_files(tmp_path: Path) -> None:
    pq.write_table(_orders(10), tmp_path / "a.parquet")
    pq.write_table(_orders(10, 10), tmp_path / "b.parquet")
    os.utime(tmp_path / "a.parquet", (1_700_000_000, 1_700_000_000))
    os.utime(tmp_path / "b.parquet", (1_700_000_000, 1_700_000_000))
    first = FileSource(str(tmp_path))
    assert first.read().num_rows == 20
    mark = first.watermark()
    assert mark == {"mtime": 1_700_000_000.0, "paths": sorted([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])}
    pq.write_table(_orders(5, 100), tmp_path / "c.parquet")
    os.utime(tmp_path / "c.parquet", (1_700_000_000, 1_700_000_000))   # same instant, new name: still new
    pq.write_table(_orders(3, 200), tmp_path / "d.parquet")
    later = FileSource(str(tmp_path))
    later.resume_after(mark)
    assert sorted(later.read().column("id").to_pylist()) == [*range(100, 105), *range(200, 203)]
    nothing = FileSource(str(tmp_path))
    nothing.resume_after(later.watermark())
    empty = nothing.read()
    assert empty.num_rows == 0 and empty.schema.names == ["id", "amount", "country"]   # typed, even when empty
    assert nothing.watermark() == later.watermark()


def test_parquet_on_s3_through_the_emulator(s3_emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    import fsspec

    for key, value in s3_emulator.environment.items():
        monkeypatch.setenv(key, value)
    bucket = f"data-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    for day, start in (("2024-01-01", 0), ("2024-01-02", 500)):
        with fs.open(f"{bucket}/orders/day={day}/part.parquet", "wb") as out:
            pq.write_table(_orders(500, start), out)
    url = f"s3://{bucket}/orders/*/*.parquet"
    table = data.read(url, columns=["id", "day"], filter="day == '2024-01-02' and id < 510")
    assert table.column("id").to_pylist() == list(range(500, 510))
    source = data.open_source(url)
    source.read()
    assert source.watermark()["paths"] and all(p.startswith(bucket) for p in source.watermark()["paths"])
    assert source.describe() == f"files {url}"
