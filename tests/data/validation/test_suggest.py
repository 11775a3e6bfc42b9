"""A schema suggested from a reference sample accepts that sample (and fresh data like it) and rejects a corrupted copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.data.validation import parse_schema, validate
from conveyor.data.validation.suggest import suggest_schema, widen
from conveyor.errors import ValidationFailed
from tests import warm_cli
from tests.conftest import REPO


def _sample(seed: int, n: int = 3_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": np.arange(seed * 10_000, seed * 10_000 + n),
        "age": rng.integers(18, 90, n),
        "income": np.round(rng.lognormal(10, 0.5, n), 2),
        "churn_probability": rng.random(n),
        "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
        "email": [f"c{seed}_{i}@example.com" for i in range(n)],
        "sku": [f"SK-{i % 1000:04d}x" for i in range(n)],
        "note": pd.array([None if i % 7 == 0 else f"free text {i * 37 % 101}" for i in range(n)], dtype="string"),
    })


def test_suggested_schema_accepts_the_reference_and_rejects_a_corrupted_copy() -> None:
    reference = _sample(1)
    text = suggest_schema(reference, name="customers", source="customers.parquet")
    schema = parse_schema(text, source="suggested")
    cols = schema.columns
    # slack: not the observed extremes, but rounded bounds around them
    assert cols["age"].range.min == 10 and cols["age"].range.max == 97
    assert cols["age"].range.min < reference.age.min() and cols["age"].range.max > reference.age.max()
    assert (cols["churn_probability"].range.min, cols["churn_probability"].range.max) == (0, 1)
    assert cols["income"].range.min == 0                     # non-negative stays non-negative
    assert cols["plan"].categories == ["basic", "plus", "pro"] and cols["email"].categories is None
    assert cols["customer_id"].range.max is None                # identifiers grow: no upper bound
    assert cols["customer_id"].unique and cols["email"].unique and not cols["age"].unique
    assert not cols["sku"].unique and cols["sku"].pattern == r"[A-Z]{2}-\d{4}[a-z]"
    assert cols["email"].pattern is not None and "@" in cols["email"].pattern
    assert cols["note"].nullable and not cols["age"].nullable and cols["note"].pattern is None
    assert "# observed 18 .. 89 (" in text and "14.3% missing" in text   # the comments say what was seen
    assert validate(reference, schema).passed
    assert validate(_sample(2), schema).passed                         # fresh data from the same process passes

    corrupted = reference.copy()
    corrupted.loc[5, "age"] = 140
    corrupted.loc[9, "plan"] = "enterprise"
    corrupted.loc[11, "email"] = "not an email"
    corrupted.loc[12, "customer_id"] = corrupted.loc[13, "customer_id"]
    corrupted.loc[20, "churn_probability"] = 1.5
    with pytest.raises(ValidationFailed) as info:
        validate(corrupted, schema)
    failed = {c["name"]: [s["row"] for s in c["sample"]] for c in info.value.report["constraints"]
              if c["outcome"] == "failed"}
    assert failed == {"age.range": [5], "plan.categories": [9], "email.pattern": [11],
                      "customer_id.unique": [12, 13], "churn_probability.range": [20]}


def test_widen_rounds_outward_and_keeps_signs() -> None:
    assert widen(18, 89, integer=True) == (10, 97)
    assert widen(-3.2, -1.1) == (-3.5, -0.8)
    assert widen(0.0, 0.0) == (0.0, 0.1)
    assert widen(5, 5, integer=True) == (4, 6)
    assert widen(1234.5, 98765.4) == (0.0, 109000.0)


@pytest.mark.slow
def test_cli_suggest_then_validate(tmp_path: Path) -> None:
    reference = _sample(3, 400)
    reference.to_parquet(tmp_path / "ref.parquet")
    bad = reference.copy()
    bad.loc[7, "age"] = 500
    bad.to_csv(tmp_path / "current.csv", index=False)

    def conveyor(*args: str) -> subprocess.CompletedProcess[str]:
        return warm_cli.run(args, cwd=tmp_path, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                                  "CONVEYOR_HOME": str(tmp_path / "home")})

    done = conveyor("data", "suggest", "ref.parquet", "-o", "schema.yaml")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "schema.yaml").read_text().startswith("# Schema suggested by `conveyor data suggest`")
    again = conveyor("data", "suggest", "ref.parquet", "-o", "schema.yaml")
    assert again.returncode == 7 and "--force" in again.stderr           # an edited schema is not overwritten
    done = conveyor("data", "validate", "current.csv", "--schema", "schema.yaml", "--report", "report.html")
    assert done.returncode == 3, done.stderr
    assert "age.range" in done.stderr and "1 of 400 rows" in done.stderr and "rows 7" in done.stderr
    assert "age.range" in (tmp_path / "report.html").read_text()
    missing = conveyor("data", "validate", "nope.parquet", "--schema", "schema.yaml")
    assert missing.returncode == 6 and "No file at nope.parquet" in missing.stderr
