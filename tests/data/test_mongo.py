"""The MongoDB source, on mongomock: no MongoDB server installs on these machines (docs/data.md says so)."""

from __future__ import annotations

import mongomock
import pytest

from conveyor.data.sources import open_source, read
from conveyor.errors import ConfigurationError, SourceReadError


@mongomock.patch(servers=(("db.example", 27017),))
def test_filter_projection_and_batches_through_pymongo() -> None:
    import pymongo

    orders = pymongo.MongoClient("mongodb://db.example:27017")["shop"]["orders"]
    orders.insert_many([{"n": i, "status": "paid" if i % 3 else "open", "total": i * 1.5,
                         "customer": {"id": f"c{i % 4}", "tier": "gold" if i % 2 else "std"}, "tags": ["a"] * (i % 3)}
                        for i in range(25)])
    source = open_source("mongodb://db.example:27017/shop", collection="orders", filter={"status": "paid"},
                         projection={"_id": 0, "n": 1, "total": 1, "customer": 1}, batch_size=6, sort=[("n", 1)])
    batches = list(source.batches())
    paid = [i for i in range(25) if i % 3]
    assert [b.num_rows for b in batches] == [6, 6, 4]
    table = source.read()
    assert table.column_names == ["n", "total", "customer"]
    assert table.column("n").to_pylist() == paid
    assert table.column("total").to_pylist() == [i * 1.5 for i in paid]
    assert table.column("customer").type.num_fields == 2                   # a nested document is a struct
    assert source.describe() == "mongo mongodb://db.example:27017/shop.orders"

    everything = read("mongodb://db.example:27017", database="shop", collection="orders", limit=5)
    assert everything.num_rows == 5
    ids = everything.column("_id").to_pylist()
    assert all(isinstance(i, str) and len(i) == 24 for i in ids)           # ObjectId as hex text
    assert everything.column("tags").to_pylist()[:3] == [[], ["a"], ["a", "a"]]


def test_bad_mongo_options_are_named() -> None:
    client = mongomock.MongoClient()
    client["shop"]["orders"].insert_one({"n": 1})
    with pytest.raises(ConfigurationError, match="password_env='NAME'"):
        open_source("mongodb://app:hunter2@db.example/shop", collection="orders")
    with pytest.raises(ConfigurationError, match="name the database"):
        open_source("mongodb://db.example", collection="orders")
    with pytest.raises(SourceReadError, match=r"mongo mongodb://db.example/shop.orders: the query failed.*\$bogus"):
        read("mongodb://db.example/shop", collection="orders", filter={"n": {"$bogus": 1}}, client=client)
