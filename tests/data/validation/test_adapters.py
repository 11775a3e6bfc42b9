"""Great Expectations suites and pandera schemas, as the real libraries wrote them (fixtures/, made by
make_fixtures.py in their own venvs), validate data with the same verdicts those libraries give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.errors import SchemaError
from tests.export.venvs import run_in, target_venv

FIXTURES = Path(__file__).parent / "fixtures"


def _frame() -> pd.DataFrame:
    """200 rows that pass both fixtures, with known bad rows planted."""
    n = 200
    rng = np.random.default_rng(5)
    i = np.arange(n)
    df = pd.DataFrame({
        "age": (i % 100).astype("int64"),
        "score": rng.uniform(0, 0.99, n),
        "country": np.where(i < 100, "FR", "DE"),          # (age, country) is unique...
        "code": [f"AB-{k}" for k in i],
        "price": rng.uniform(10, 20, n),
        "discount": rng.uniform(0, 5, n),
        "x": rng.uniform(0.5, 2.5, n),
    })
    df.loc[71, "age"] = 70                                   # ... but for rows 70 and 71
    df.loc[[3, 4], "age"] = [140, -1]
    df.loc[8, "score"] = 1.0                                 # the range's max is exclusive
    df.loc[12, "country"] = "XX"
    df.loc[[20, 21], "code"] = "AB-20"
    df.loc[30, "code"] = "ab-30"
    df.loc[31, "code"] = "AB-ZZ99"                           # GE's suite also forbids "ZZ"
    df.loc[40, "discount"] = 25.0
    df.loc[[50, 51], "x"] = [3.0, 4.0]                       # pandera: ne(3), notin([4.0])
    df.loc[60, "x"] = 6.0                                    # pandera: lt(5)
    return df


def _rows(report: cv.data.ValidationReport, name: str) -> set[int]:
    c = report.get(name)
    assert c.failed <= 5, name
    return {s["row"] for s in c.sample}


def test_great_expectations_suite_used_as_it_is() -> None:
    df = _frame()
    schema = cv.data.load_schema(FIXTURES / "ge_suite.json")
    assert schema.name == "customers"
    report = cv.data.validate(df, FIXTURES / "ge_suite.json", raise_on_fail=False).report
    assert _rows(report, "age.range") == {3, 4}
    assert _rows(report, "score.range") == {8}
    assert _rows(report, "country.categories") == {12}
    assert _rows(report, "code.unique") == {20, 21}
    assert _rows(report, "code.pattern") == {30, 31}
    assert _rows(report, "price.greater_than.discount") == {40}
    assert _rows(report, "country.not_in_set") == {12}
    assert _rows(report, "code.not_match_regex") == {31}
    assert report.get("age.type").outcome == "passed" and report.get("rows").outcome == "passed"
    # severity "warning" became the warn policy
    key = report.get("unique_together(age, country)")
    assert key.outcome == "warned" and {s["row"] for s in key.sample} == {70, 71}
    assert {c.name for c in report.failures} == {"age.range", "score.range", "country.categories", "code.unique",
                                                 "code.pattern", "price.greater_than.discount", "country.not_in_set",
                                                 "code.not_match_regex"}


def test_pandera_schema_used_as_it_is() -> None:
    df = _frame()
    report = cv.data.validate(df, FIXTURES / "pandera_schema.yaml", raise_on_fail=False).report
    assert _rows(report, "age.range") == {3, 4}
    assert _rows(report, "score.range") == {8}
    assert _rows(report, "country.categories") == {12}
    assert _rows(report, "code.unique") == {20, 21}
    assert _rows(report, "code.pattern") == {30, 31}
    assert _rows(report, "x.range") == {60}
    assert _rows(report, "x.not_equal_to") == {50} and _rows(report, "x.notin") == {51}
    assert _rows(report, "unique_together(age, country)") == {70, 71}
    schema = cv.data.load_schema(FIXTURES / "pandera_schema.yaml")
    assert not schema.columns["age"].nullable and schema.columns["score"].nullable   # pandera's defaults
    assert {c.name for c in report.failures} == {"age.range", "score.range", "country.categories", "code.unique",
                                                 "code.pattern", "x.range", "x.not_equal_to", "x.notin",
                                                 "unique_together(age, country)"}


PANDERA_VERDICT = r'''
import json, sys
import pandas as pd
import pandera.pandas as pa
schema = pa.DataFrameSchema.from_yaml(sys.argv[1])
df = pd.read_parquet(sys.argv[2])
try:
    schema.validate(df, lazy=True)
    cases = []
except pa.errors.SchemaErrors as exc:
    fc = exc.failure_cases
    cases = [[str(c), int(i)] for c, i in zip(fc["column"], fc["index"]) if i == i and i is not None]
print(json.dumps(cases))
'''


@pytest.mark.slow
def test_pandera_itself_finds_the_same_rows(tmp_path: Path) -> None:
    """The real pandera, in its venv, on the same data and its own schema file: the same bad rows per column."""
    from tests.data.validation.make_fixtures import PANDERA

    df = _frame()
    df.to_parquet(tmp_path / "data.parquet")
    done = run_in(target_venv("pandera", PANDERA), ["-c", PANDERA_VERDICT, str(FIXTURES / "pandera_schema.yaml"),
                                                    str(tmp_path / "data.parquet")], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs: dict[str, set[int]] = {}
    for column, row in json.loads(done.stdout):
        theirs.setdefault(column, set()).add(row)
    report = cv.data.validate(df, FIXTURES / "pandera_schema.yaml", raise_on_fail=False).report
    ours: dict[str, set[int]] = {}
    for c in report.failures:
        # pandera files a composite key's failures under each of its columns, a rule's under its column
        columns = c.columns if c.kind == "unique_together" else [c.column or c.name.split(".")[0]]
        for column in columns:
            ours.setdefault(column, set()).update(s["row"] for s in c.sample)
    assert ours == theirs == {"age": {3, 4, 70, 71}, "score": {8}, "country": {12, 70, 71},
                              "code": {20, 21, 30, 31}, "x": {50, 51, 60}}


def test_what_has_no_equivalent_is_refused_by_name(tmp_path: Path) -> None:
    suite = json.loads((FIXTURES / "ge_suite.json").read_text())
    suite["expectations"].append({"type": "expect_column_mean_to_be_between", "kwargs": {"column": "age"}})
    suite["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a",
                                                                                             "mostly": 0.9}})
    with pytest.raises(SchemaError, match=r"expectation 15 \(expect_column_mean_to_be_between\).*mostly=0\.9"):
        cv.data.from_great_expectations(suite)
    lenient = cv.data.from_great_expectations(suite, skip_unsupported=True)
    assert "expect_column_mean_to_be_between" in lenient.description and "age" in lenient.columns
