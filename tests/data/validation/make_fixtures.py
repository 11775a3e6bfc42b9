"""Write the adapter fixtures with the real libraries, each in its own virtualenv (their pins fight ours).

    python -m tests.data.validation.make_fixtures

writes fixtures/ge_suite.json (Great Expectations' ``ExpectationSuite.to_json_dict()``) and
fixtures/pandera_schema.yaml (pandera's ``DataFrameSchema.to_yaml()``); the tests read those files.
"""

from __future__ import annotations

from pathlib import Path

from tests.export.venvs import run_in, target_venv

HERE = Path(__file__).parent / "fixtures"
PANDERA = ["pandera[io]>=0.20", "pandas>=2.1", "pyarrow>=15"]
GREAT_EXPECTATIONS = ["great-expectations>=1.3", "pyarrow>=15"]

GE_SUITE = r'''
import json, sys
import great_expectations as gx
gx.get_context(mode="ephemeral")
E = gx.expectations
suite = gx.ExpectationSuite(name="customers")
for e in [E.ExpectColumnToExist(column="age"),
          E.ExpectColumnValuesToNotBeNull(column="age"),
          E.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=130),
          E.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1, strict_max=True),
          E.ExpectColumnValuesToBeInSet(column="country", value_set=["FR", "DE"]),
          E.ExpectColumnValuesToBeUnique(column="code"),
          E.ExpectColumnValuesToMatchRegex(column="code", regex=r"^[A-Z]{2}-\d+$"),
          E.ExpectColumnValueLengthsToBeBetween(column="code", min_value=2, max_value=10),
          E.ExpectColumnValuesToBeOfType(column="age", type_="int64"),
          E.ExpectTableRowCountToBeBetween(min_value=1, max_value=1000000),
          E.ExpectCompoundColumnsToBeUnique(column_list=["age", "country"], severity="warning"),
          E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="price", column_B="discount", or_equal=True),
          E.ExpectColumnValuesToNotBeInSet(column="country", value_set=["XX"]),
          E.ExpectColumnValuesToNotMatchRegex(column="code", regex="ZZ")]:
    suite.add_expectation(e)
json.dump(suite.to_json_dict(), open(sys.argv[1], "w"), indent=1)
'''

PANDERA_SCHEMA = r'''
import sys
import pandera.pandas as pa
schema = pa.DataFrameSchema({
    "age": pa.Column(int, [pa.Check.ge(0), pa.Check.le(130)], nullable=False),
    "score": pa.Column(float, pa.Check.in_range(0, 1, include_max=False), nullable=True),
    "country": pa.Column(str, pa.Check.isin(["FR", "DE"])),
    "code": pa.Column(str, [pa.Check.str_matches(r"[A-Z]{2}-\d+"), pa.Check.str_length(2, 10)], unique=True),
    "x": pa.Column(float, [pa.Check.gt(0), pa.Check.lt(5), pa.Check.ne(3), pa.Check.notin([4.0])], nullable=True,
                   required=False),
}, unique=["age", "country"], name="customers")
open(sys.argv[1], "w").write(schema.to_yaml())
'''


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, requirements, script, out in (("great-expectations", GREAT_EXPECTATIONS, GE_SUITE, "ge_suite.json"),
                                            ("pandera", PANDERA, PANDERA_SCHEMA, "pandera_schema.yaml")):
        done = run_in(target_venv(name, requirements), ["-c", script, str(HERE / out)])
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        print(f"wrote {HERE / out}")


if __name__ == "__main__":
    main()
