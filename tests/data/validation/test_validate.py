"""Each constraint kind catches exactly the bad rows; policies decide what follows; rules are safe and three-valued."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import conveyor as cv
from conveyor.data.validation import parse_schema, validate
from conveyor.errors import SchemaError, ValidationFailed

N = 2_000


def _table() -> tuple[pa.Table, dict[str, set[int]]]:
    """A clean table with known bad rows planted per constraint; returns the table and the planted rows."""
    rng = np.random.default_rng(7)
    age = rng.integers(18, 90, N).astype(np.int64)
    score = rng.random(N)
    country = rng.choice(["FR", "DE", "US"], N).astype(object)
    code = np.array([f"AB-{i:05d}" for i in range(N)], dtype=object)
    price = rng.uniform(10, 100, N)
    discount = price * rng.uniform(0, 0.5, N)
    email = np.array([f"user{i}@example.org" for i in range(N)], dtype=object)
    bad = {"age.range": {3, 500, 1999}, "age.nullable": {10, 11}, "country.categories": {7, 42},
           "code.unique": {100, 101, 102}, "code.pattern": {250}, "discount_le_price": {60, 61},
           "email.length": {900}, "pair.unique_together": {1200, 1201}}
    age_null = np.zeros(N, dtype=bool)
    age[[3, 500, 1999]] = [-1, 131, 400]
    age_null[[10, 11]] = True
    country[[7, 42]] = ["XX", "fr"]
    code[[101, 102]] = code[100]
    code[250] = "ab-1"
    discount[[60, 61]] = price[[60, 61]] + 1
    email[900] = "x" * 81 + "@e.org"
    # the pair (country, batch) repeats only on rows 1200 and 1201
    batch = np.arange(N)
    batch[1201] = batch[1200]
    country[1201] = country[1200]
    table = pa.table({"age": pa.array(age, mask=age_null), "score": score, "country": pa.array(country, pa.string()),
                      "code": pa.array(code, pa.string()), "price": price, "discount": discount,
                      "email": pa.array(email, pa.string()), "batch": batch})
    return table, bad


SCHEMA = """
name: customers
on_fail: warn
rows: {min: 10, max: 1000000}
columns:
  age: {type: integer, nullable: false, range: {min: 0, max: 130}}
  score: {type: float, range: {min: 0, max: 1}}
  country: {type: string, categories: [FR, DE, US]}
  code: {type: string, unique: true, pattern: "[A-Z]{2}-\\\\d{5}"}
  email: {type: string, length: {min: 3, max: 80}}
unique_together: [[country, batch]]
rules:
  - name: discount_le_price
    check: discount <= price
"""


def test_each_constraint_kind_catches_exactly_the_bad_rows() -> None:
    table, bad = _table()
    result = validate(table, parse_schema(SCHEMA))
    report = result.report
    assert report.passed   # every policy is warn
    for name, rows in bad.items():
        if name == "pair.unique_together":
            name = "unique_together(country, batch)"
        c = report.get(name)
        assert c.outcome == "warned", name
        assert c.failed == len(rows), (name, c.failed)
        assert {s["row"] for s in c.sample} == rows, name
        assert c.share == pytest.approx(len(rows) / N)
    assert report.get("score.range").outcome == "passed" and report.get("rows").outcome == "passed"
    # samples carry the row's values, the constraint's own column first
    sample = report.get("age.range").sample[0]
    assert list(sample)[:2] == ["row", "age"] and sample == {**sample, "row": 3, "age": -1}
    assert result.valid.num_rows == N and result.quarantined.num_rows == 0


def test_quarantine_sets_aside_exactly_the_offending_rows_and_fail_names_the_constraint() -> None:
    table, bad = _table()
    schema = parse_schema(SCHEMA.replace("on_fail: warn", "on_fail: quarantine"))
    result = validate(table, schema)
    expected = set().union(*bad.values())
    q = result.quarantined
    assert set(q.column("_row").to_pylist()) == expected and q.num_rows == len(expected)
    assert result.valid.num_rows == N - len(expected) and result.report.quarantined_rows == len(expected)
    reasons = dict(zip(q.column("_row").to_pylist(), q.column("_failed").to_pylist(), strict=True))
    assert reasons[3] == "age.range" and reasons[60] == "discount_le_price"
    assert reasons[101] == "code.unique"
    # the quarantined rows keep their values; the valid rows are the others, in order
    assert q.column("age").to_pylist()[q.column("_row").to_pylist().index(500)] == 131
    kept = np.setdiff1d(np.arange(N), sorted(expected))
    assert result.valid.column("code").to_pylist() == table.column("code").take(kept).to_pylist()

    # a fail policy on one constraint fails, naming it with its count and rows; the others still quarantine
    failing = SCHEMA.replace("on_fail: warn", "on_fail: quarantine").replace(
        "country: {type: string, categories: [FR, DE, US]}",
        "country: {type: string, categories: [FR, DE, US], on_fail: {categories: fail}}")
    with pytest.raises(ValidationFailed) as info:
        validate(table, parse_schema(failing))
    assert "country.categories" in str(info.value) and "2 of 2,000 rows" in str(info.value)
    assert "rows 7, 42" in str(info.value) and "age.range" not in str(info.value).split("\n")[0]
    assert info.value.report["passed"] is False
    result = validate(table, parse_schema(failing), raise_on_fail=False)
    assert [c.name for c in result.report.failures] == ["country.categories"]


def test_table_constraints_types_missing_columns_and_row_counts() -> None:
    table, _ = _table()
    schema = parse_schema("""
on_fail: quarantine
strict: true
rows: {min: 5000, on_fail: warn}
columns:
  age: {type: string}
  ghost: {range: {min: 0}}
  maybe: {required: false, nullable: false}
""")
    result = validate(table, schema, raise_on_fail=False)
    r = result.report
    assert r.get("age.type").outcome == "failed" and "int64" in r.get("age.type").detail
    assert r.get("ghost.present").outcome == "failed"           # an inherited quarantine cannot set a table aside
    assert r.get("ghost.range").outcome == "skipped"
    assert "maybe.present" not in [c.name for c in r.constraints] and r.get("maybe.nullable").outcome == "skipped"
    assert r.get("rows").outcome == "warned" and "fewer than 5,000" in r.get("rows").detail
    assert r.get("columns").outcome == "failed" and "score" in r.get("columns").detail
    with pytest.raises(SchemaError, match="line 3.*rows.on_fail is quarantine"):
        parse_schema("columns: {}\nrows:\n  on_fail: quarantine\n  min: 1\n", source="s.yaml")


def test_rules_follow_three_valued_logic_and_refuse_anything_but_expressions() -> None:
    t = pa.table({"a": pa.array([1, 2, None, 4, 5]), "b": pa.array([1.0, 5.0, 3.0, None, 2.0]),
                  "status": ["open", "closed", "closed", "open", None], "unit price": [1, 2, 3, 4, 5]})
    schema = parse_schema("""
on_fail: warn
rules:
  - {name: le, check: "a <= b"}
  - {name: chained, check: "0 < a < 5"}
  - {name: closed_has_b, check: "status != 'closed' or b is not None"}
  - {name: in_list, check: "status in ['open', 'closed']"}
  - {name: arithmetic, check: "abs(a * 2 - b) / 1 >= 2 and a % 2 in [0, 1]"}
  - {name: spaced, check: "col('unit price') < 5"}
  - {name: presence, check: "notnull(a) or isnull(b) == False"}
  - {name: regex, check: "not matches(status, '^c')"}
""")
    r = validate(t, schema).report
    rows = {c.name: sorted(s["row"] for s in c.sample) for c in r.constraints}
    assert rows["le"] == [4]                       # 5 > 2; rows with a missing side pass
    assert rows["chained"] == [4]
    assert rows["closed_has_b"] == []
    assert rows["in_list"] == []                   # missing status: unknown, passes
    assert rows["arithmetic"] == [0, 1]            # |2 - 1| and |4 - 5| are below 2; missing rows pass
    assert rows["spaced"] == [4]
    assert rows["presence"] == []
    assert rows["regex"] == [1, 2]
    for bad, why in (("__import__('os').system('true')", "only these functions"),
                     ("a.__class__", "Attribute is not allowed"), ("[x for x in a]", "ListComp is not allowed"),
                     ("a ==", "not a Python expression"), ("lambda: 1", "Lambda is not allowed"),
                     ("a in b", "takes a list of constants")):
        with pytest.raises(SchemaError, match=why):
            parse_schema(f"rules:\n  - name: r\n    check: \"{bad}\"\n")
    with pytest.raises(SchemaError, match="gives int64 values, not true/false"):
        validate(t, parse_schema("rules: [{name: r, check: a + 1}]"))
    with pytest.raises(SchemaError, match="cannot be computed"):
        validate(t, parse_schema("rules: [{name: r, check: status < 3}]"))


def test_reports_as_json_and_html_and_python_built_schemas() -> None:
    table, _ = _table()
    schema = cv.data.Schema(name="py", on_fail="warn", columns={
        "age": cv.data.Column(type="integer", range=cv.data.Range(min=0, max=130)),
        "country": cv.data.Column(categories=["FR", "DE", "US"])})
    report = cv.data.validate(table.to_pandas(), schema).report   # a DataFrame works as well
    d = report.to_dict()
    # pandas holds an integer column with missing values as floats: the type check says so
    assert d["summary"]["warned"] == 3 and d["rows"] == N
    assert "double" in report.get("age.type").detail
    again = cv.data.ValidationReport.from_dict(d)
    assert again.get("age.range").failed == 3
    page = report.to_html()
    assert "age.range" in page and "<svg" in page and "0.15%" in page and "<script" not in page
