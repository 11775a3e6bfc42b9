"""Schema files: a malformed one is refused with the file, the line and the constraint named."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.data.validation import load_schema, parse_schema
from conveyor.errors import SchemaError

GOOD = """\
name: orders
columns:
  total:
    type: float
    range: {min: 0}
  status:
    categories: [open, closed]
rules:
  - name: positive
    check: total >= 0
"""


@pytest.mark.parametrize(("text", "expected"), [
    # a typo in a key: the line, the path, the closest known key
    (GOOD.replace("range: {min: 0}", "rnage: {min: 0}"),
     r"s\.yaml: line 5, columns\.total\.rnage: unknown key 'rnage' \(did you mean 'range'\?"),
    # a value of the wrong kind
    (GOOD.replace("{min: 0}", "{min: [1, 2]}"), r"line 5, columns\.total\.range\.min: "),
    (GOOD.replace("{min: 0}", "{min: 5, max: 1}"), r"line 5, columns\.total\.range: min \(5\) is greater than max"),
    (GOOD.replace("type: float", "type: flaot"), r"line 4, columns\.total\.type: unknown type 'flaot'"),
    (GOOD.replace("check: total >= 0", "check: total >= import os"), r"line 10, rules\.0\.check: rule .* is not a Python"),
    (GOOD.replace("categories: [open, closed]", "pattern: '(a'"), r"line 7, columns\.status\.pattern: .*not a valid RE2"),
    (GOOD.replace("name: orders", "name: orders\non_fail: explode"), r"line 2, on_fail: Input should be 'fail', 'warn'"),
    # YAML itself broken: line and column of the problem
    (GOOD.replace("range: {min: 0}", "range: {min: 0"), r"s\.yaml line \d+, column \d+: not valid YAML"),
    # a key given twice would silently lose the first
    (GOOD.replace("  status:", "  total:"), r"line 6: key 'total' appears twice \(first on line 3\)"),
    ("- just\n- a list\n", r"a schema file is a mapping"),
    (GOOD.replace("status:\n    categories", "status:\n    on_fail: {type: quarantine}\n    type: string\n    categories"),
     r"line 7: status\.type has policy quarantine"),
])
def test_malformed_schema_is_refused_with_line_and_constraint(text: str, expected: str) -> None:
    with pytest.raises(SchemaError, match=expected) as info:
        parse_schema(text, source="s.yaml")
    assert "conveyor data suggest" in str(info.value) or "quarantine" in str(info.value)


def test_schema_file_round_trips_and_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(GOOD)
    schema = load_schema(path)
    assert schema.columns["total"].range.min == 0 and schema.rules[0].check == "total >= 0"
    again = parse_schema(schema.to_yaml())
    assert again.model_dump() == schema.model_dump()
    with pytest.raises(SchemaError, match="conveyor data suggest DATA -o"):
        load_schema(tmp_path / "nope.yaml")
