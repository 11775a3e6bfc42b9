"""Deterministic splits: by a hash of the key, stable across versions, stratified on request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import conveyor as cv
from conveyor.data.keyhash import hash_columns
from conveyor.data.splits import assign_splits
from conveyor.errors import InvalidRequest


def _table(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return pa.table({"id": ids, "email": [f"user{i}@example.com" for i in ids],
                     "label": rng.choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1]), "x": rng.normal(size=n)})


def test_rows_keep_their_split_when_rows_are_added_and_in_any_order() -> None:
    old = _table(20_000)
    new = pa.concat_tables([_table(5_000, start=20_000, seed=1), old.take(np.random.default_rng(2).permutation(20_000))])
    for key in ("id", "email", ["id", "email"]):
        before = dict(zip(old.column("id").to_pylist(), assign_splits(old, by=key, seed=7).tolist(), strict=True))
        after = dict(zip(new.column("id").to_pylist(), assign_splits(new, by=key, seed=7).tolist(), strict=True))
        assert all(after[i] == s for i, s in before.items())
    parts = cv.data.split(new, by="id", fractions={"train": 0.8, "validation": 0.1, "test": 0.1}, seed=7)
    sizes = {k: v.num_rows / new.num_rows for k, v in parts.items()}
    assert sum(v.num_rows for v in parts.values()) == new.num_rows
    assert all(abs(sizes[k] - f) < 0.01 for k, f in {"train": 0.8, "validation": 0.1, "test": 0.1}.items())
    # a different seed is a different (but equally stable) assignment
    assert (assign_splits(old, by="id", seed=8) != assign_splits(old, by="id", seed=7)).mean() > 0.2


def test_stratified_split_keeps_class_proportions() -> None:
    data = _table(10_001)
    parts = cv.data.split(data.to_pandas(), by="id", fractions={"train": 0.7, "test": 0.3}, stratify="label")
    assert isinstance(parts["train"], pd.DataFrame)
    overall = data.to_pandas()["label"].value_counts()
    for name, frac in (("train", 0.7), ("test", 0.3)):
        counts = parts[name]["label"].value_counts()
        for label, total in overall.items():
            assert abs(counts[label] - frac * total) <= 1        # exact to one row per class


def test_key_hash_is_stable_and_types_are_checked() -> None:
    # fixed values: a change to the hash would silently move every user's rows to other splits
    table = pa.table({"id": pa.array([1, 2], pa.int64()), "s": ["a", "bcdefghijk"]})
    assert hash_columns(table, ["id"]).tolist() == hash_columns(table.cast(
        pa.schema([("id", pa.int32()), ("s", pa.string())])), ["id"]).tolist()
    assert hash_columns(table, ["s"]).tolist() == hash_columns(pa.table({"s": pa.array(["a", "bcdefghijk"],
                                                                                       pa.large_string())}), ["s"]).tolist()
    assert len(set(hash_columns(pa.table({"s": ["", "\0", "\0\0", None]}), ["s"]).tolist())) == 4
    with pytest.raises(InvalidRequest, match="add up to 1.2"):
        cv.data.split(table, by="id", fractions={"train": 0.8, "test": 0.4})
    with pytest.raises(InvalidRequest, match="No column 'nope'"):
        cv.data.split(table, by="nope")
    with pytest.raises(InvalidRequest, match="cannot be hashed as a key"):
        cv.data.split(pa.table({"l": [[1], [2]]}), by="l")
