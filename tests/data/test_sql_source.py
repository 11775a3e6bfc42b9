"""The SQL source for real on PostgreSQL (ADBC and SQLAlchemy paths), MariaDB and SQLite; BigQuery by
compiling the statements Conveyor generates with its dialect (there is no BigQuery emulator here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from conveyor import data
from conveyor.data.sources.sql import SQLSource, build_statement, decode_watermark, encode_watermark
from conveyor.errors import ConfigurationError, SourceReadError

T0 = dt.datetime(2024, 1, 1, 12, 0, 0)


def _fill(url: str, n: int = 250) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    users = sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False), sa.Column("name", sa.String(50)),
                     sa.Column("score", sa.Float), sa.Column("updated_at", sa.DateTime))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"id": i, "name": f"user{i}", "score": i / 2,
                                       "updated_at": T0 + dt.timedelta(minutes=i)} for i in range(n)])
        conn.execute(users.insert(), [{"id": 10_000, "name": None, "score": None, "updated_at": None}])
    engine.dispose()


def _count(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT COUNT(*) FROM users")).scalar_one()
    engine.dispose()
    return int(n)


def _behaves(url: str, *, fast: bool = True) -> SQLSource:
    """What every database must do: bound parameters, streamed batches, tables, incremental reads."""
    _fill(url)
    query = "SELECT id, name, score FROM users WHERE name = :name OR id < :below ORDER BY id"
    source = data.open_source(url, query=query, params={"name": "user200", "below": 3}, batch_size=2, fast=fast)
    batches = list(source.batches())
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == [0, 1, 2, 200]
    assert table.column("name").to_pylist() == ["user0", "user1", "user2", "user200"]
    assert pa.types.is_floating(table.schema.field("score").type)
    if source.path_used == "sqlalchemy":
        assert [b.num_rows for b in batches] == [2, 2]             # streamed in batch_size rows
    # an injection attempt is only a value: nothing matches and the table is still there
    evil = "x' OR '1'='1'; DROP TABLE users; --"
    hit = data.read(url, query="SELECT id FROM users WHERE name = :name", params={"name": evil}, fast=fast)
    assert hit.num_rows == 0 and _count(url) == 251
    # the files' filter language, as a WHERE clause with bound values
    picked = data.read(url, table="users", columns=["id"], filter="id in (1, 2, 3) and score > 0.5", fast=fast)
    assert sorted(picked.column("id").to_pylist()) == [2, 3]
    none = data.read(url, table="users", columns=["id"], filter=[("name", "=", evil)], fast=fast)
    assert none.num_rows == 0 and none.column_names == ["id"]
    # a table, with columns
    whole = data.read(url, table="users", columns=["id", "name"], fast=fast)
    assert whole.column_names == ["id", "name"] and whole.num_rows == 251
    # incremental: only rows past the watermark, the watermark moves to the greatest value read
    first = SQLSource(url, table="users", columns=["id", "updated_at"], incremental="updated_at", fast=fast)
    assert first.read().num_rows == 251
    mark = first.watermark()
    newest = decode_watermark(mark)   # SQLite keeps times as ISO text, and compares them as text
    newest = dt.datetime.fromisoformat(newest) if isinstance(newest, str) else newest.replace(tzinfo=None)
    assert newest == T0 + dt.timedelta(minutes=249)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name, score, updated_at) VALUES (:i, 'late', 1, :t)"),
                     [{"i": 500, "t": T0 + dt.timedelta(days=1)}, {"i": 501, "t": T0 + dt.timedelta(days=2)}])
    engine.dispose()
    later = SQLSource(url, table="users", columns=["id", "updated_at"], incremental="updated_at", fast=fast)
    later.resume_after(mark)
    assert later.read().column("id").to_pylist() == [500, 501]
    caught_up = SQLSource(url, table="users", columns=["id", "updated_at"], incremental="updated_at", fast=fast)
    caught_up.resume_after(later.watermark())
    empty = caught_up.read()
    assert empty.num_rows == 0 and empty.column_names == ["id", "updated_at"]   # nothing new, same columns
    assert caught_up.watermark() == later.watermark()
    # a query that fails names the source and the fix, and shows no password
    with pytest.raises(SourceReadError) as caught:
        data.read(url, query="SELECT no_such_column FROM users", fast=fast)
    message = str(caught.value)
    assert "no_such_column" in message and "Check the SQL" in message and "sql " in message
    return source


@pytest.mark.postgres
def test_postgresql_through_adbc_and_through_sqlalchemy(postgres_url: str) -> None:
    fast = _behaves(postgres_url)
    assert fast.path_used == "adbc"
    slow = data.open_source(postgres_url, table="users", fast=False)
    same = data.open_source(postgres_url, table="users")
    a, b = slow.read().sort_by("id"), same.read().sort_by("id")
    assert slow.path_used == "sqlalchemy" and same.path_used == "adbc"
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.column("name").equals(b.column("name")) and a.column("updated_at").equals(b.column("updated_at"))
    assert b.schema.field("id").type == pa.int32()         # ADBC keeps the database's own types


@pytest.mark.postgres
def test_postgresql_without_adbc_streams_through_a_server_side_cursor(postgres_url: str) -> None:
    assert _behaves(postgres_url, fast=False).path_used == "sqlalchemy"


@pytest.mark.slow
def test_mariadb_with_a_password_that_never_shows(mariadb_url: str) -> None:
    from tests.databases import MARIADB_PASSWORD

    source = _behaves(mariadb_url)
    assert source.path_used == "sqlalchemy"
    assert MARIADB_PASSWORD not in source.describe() and "***" in source.describe()
    with pytest.raises(SourceReadError) as caught:
        data.read(mariadb_url, query="SELECT broken FROM nowhere")
    assert MARIADB_PASSWORD not in str(caught.value)
    wrong = mariadb_url.replace(MARIADB_PASSWORD, "not-the-password")
    with pytest.raises(SourceReadError) as caught:
        data.read(wrong, table="users")
    assert "not-the-password" not in str(caught.value) and "Access denied" in str(caught.value)


def test_sqlite(tmp_path: Path) -> None:
    _behaves(f"sqlite:///{tmp_path / 'shop.db'}")


def test_wrong_combinations_are_refused_before_any_connection() -> None:
    with pytest.raises(ConfigurationError, match="either query"):
        SQLSource("sqlite://", query="SELECT 1", table="t")
    with pytest.raises(ConfigurationError, match="parameters bind placeholders of a query"):
        SQLSource("sqlite://", table="t", params={"x": 1})
    with pytest.raises(ConfigurationError, match=r"params \['regoin'\] have no placeholder.*:region"):
        SQLSource("sqlite://", query="SELECT * FROM t WHERE region = :region", params={"regoin": "EU"})
    with pytest.raises(ConfigurationError, match="no incremental column"):
        SQLSource("sqlite://", table="t").resume_after(3)
    shown = SQLSource("bigquery://proj/ds?credentials_base64=c2VjcmV0&location=EU", table="t").describe()
    assert shown == "sql bigquery://proj/ds?credentials_base64=***&location=EU table t"
    assert encode_watermark(T0) == {"type": "datetime", "value": "2024-01-01T12:00:00"}
    assert decode_watermark(encode_watermark(dt.date(2024, 2, 3))) == dt.date(2024, 2, 3)


def test_bigquery_dialect_compiles_the_statements_conveyor_generates() -> None:
    from sqlalchemy_bigquery import BigQueryDialect

    dialect = BigQueryDialect()
    table = build_statement(table="events", schema="analytics", columns=["id", "amount"],
                            incremental="updated_at", watermark=T0)
    sql = " ".join(str(table.compile(dialect=dialect)).split())
    assert sql == ("SELECT `events`.`id`, `events`.`amount` FROM `analytics`.`events` "
                   "WHERE `events`.`updated_at` > :conveyor_watermark ORDER BY `events`.`updated_at`")
    compiled = build_statement(query="SELECT * FROM `analytics.events` WHERE region = :region",
                               params={"region": "EU"}, columns=["id"], incremental="updated_at",
                               watermark=3).compile(dialect=dialect)
    sql = " ".join(str(compiled).split())
    assert sql.startswith("SELECT `conveyor_q`.`id` FROM (SELECT * FROM `analytics.events` WHERE region = ")
    assert "`conveyor_q`.`updated_at` > " in sql and compiled.params == {"region": "EU", "conveyor_watermark": 3}
    filtered = build_statement(table="events", schema="analytics",
                               filter="country in ('FR', 'DE') and amount >= 10").compile(dialect=dialect)
    assert " ".join(str(filtered).split()) == ("SELECT * FROM `analytics`.`events` WHERE `country` IN "
                                               "UNNEST(:country_1) AND `amount` >= :param_1")
    assert filtered.params == {"country_1": ["FR", "DE"], "param_1": 10}
    plain = " ".join(str(build_statement(table="events").compile(dialect=dialect)).split())
    assert plain == "SELECT * FROM `events`"
