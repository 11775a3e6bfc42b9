"""Great Expectations suites (their JSON, 0.x or 1.x) as Conveyor schemas, without importing the library.

A 1.x expectation's ``severity`` becomes its policy (``critical`` fails, ``warning`` and ``info``
warn). GE's ``match_regex`` searches (a match anywhere in the text), so it becomes the pattern
``.*(?:regex).*``; the negative set and regex expectations and the column-pair comparisons become
rules. A column any expectation names is required, as GE fails an expectation on a missing
column. ``mostly`` below 1 (a tolerated share) and aggregate expectations (a column's mean, its
quantiles) have no equivalent and are refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.data.validation.adapters.common import col, dtype, literal, read_mapping, unsupported
from conveyor.data.validation.schema import Schema

_SEVERITY = {"critical": "fail", "warning": "warn", "info": "warn"}
_PAIR = {"expect_column_pair_values_a_to_be_greater_than_b": ">",
         "expect_column_pair_values_to_be_equal": "=="}


def from_great_expectations(suite: str | Path | dict[str, Any], *, skip_unsupported: bool = False,
        source: str | None = None) -> Schema:
    """A schema with the constraints of a Great Expectations suite (a JSON file path or its parsed dict)."""
    from conveyor.data.validation.loading import schema_from_dict

    data, source = read_mapping(suite, source=source, what="Great Expectations suite")
    columns: dict[str, dict[str, Any]] = {}
    schema: dict[str, Any] = {"name": data.get("name") or data.get("expectation_suite_name"), "columns": columns,
                              "rules": [], "unique_together": []}
    left_out: list[str] = []
    for i, exp in enumerate(data.get("expectations") or []):
        kind = exp.get("type") or exp.get("expectation_type")
        kwargs = dict(exp.get("kwargs") or {})
        policy = _SEVERITY.get(str(exp.get("severity") or "critical"), "fail")
        label = f"expectation {i + 1} ({kind})"
        mostly = kwargs.pop("mostly", 1)
        if mostly is not None and float(mostly) < 1:
            left_out.append(f"{label}: mostly={mostly} (a tolerated share of failing rows)")
            continue
        if not _translate(kind, kwargs, policy, columns, schema, label, source):
            left_out.append(label)
    note = unsupported(left_out, source, skip_unsupported, "expectation(s)")
    if note:
        schema["description"] = note
    for spec in columns.values():
        policies = spec.pop("_policies", {})
        if policies:
            spec["on_fail"] = {"default": "fail", **policies}
    return schema_from_dict({k: v for k, v in schema.items() if v not in (None, [])}, source=source)


def _translate(kind: str, kw: dict[str, Any], policy: str, columns: dict[str, dict[str, Any]],
               schema: dict[str, Any], label: str, source: str) -> bool:
    def column(constraint: str) -> dict[str, Any]:
        spec = columns.setdefault(kw["column"], {})   # GE fails an expectation on a missing column: required
        if policy != "fail":
            spec.setdefault("_policies", {})[constraint] = policy
        return spec

    def rule(name: str, check: str) -> None:
        schema["rules"].append({"name": name, "check": check, "on_fail": policy})

    if kind == "expect_column_to_exist":
        column("present")
    elif kind == "expect_column_values_to_not_be_null":
        column("nullable")["nullable"] = False
    elif kind == "expect_column_values_to_be_between":
        spec = column("range")
        spec["range"] = {k: v for k, v in (("min", kw.get("min_value")), ("max", kw.get("max_value")),
                                           ("min_exclusive", bool(kw.get("strict_min", False))),
                                           ("max_exclusive", bool(kw.get("strict_max", False)))) if v is not None}
    elif kind == "expect_column_values_to_be_in_set":
        column("categories")["categories"] = list(kw["value_set"])
    elif kind == "expect_column_values_to_not_be_in_set":
        rule(f"{kw['column']}.not_in_set", f"{col(kw['column'])} not in {literal(list(kw['value_set']))}")
    elif kind == "expect_column_values_to_be_unique":
        column("unique")["unique"] = True
    elif kind == "expect_column_values_to_match_regex":
        column("pattern")["pattern"] = f"(?s).*(?:{kw['regex']}).*"
    elif kind == "expect_column_values_to_not_match_regex":
        rule(f"{kw['column']}.not_match_regex", f"not matches({col(kw['column'])}, {literal(kw['regex'])})")
    elif kind == "expect_column_value_lengths_to_be_between":
        column("length")["length"] = {k: v for k, v in (("min", kw.get("min_value")), ("max", kw.get("max_value")))
                                      if v is not None}
    elif kind == "expect_column_value_lengths_to_equal":
        column("length")["length"] = {"min": kw["value"], "max": kw["value"]}
    elif kind == "expect_column_values_to_be_of_type":
        column("type")["type"] = dtype(kw["type_"], f"{source}, {label}")
    elif kind == "expect_table_row_count_to_be_between":
        schema["rows"] = {k: v for k, v in (("min", kw.get("min_value")), ("max", kw.get("max_value")),
                                            ("on_fail", policy)) if v is not None}
    elif kind == "expect_table_row_count_to_equal":
        schema["rows"] = {"min": kw["value"], "max": kw["value"], "on_fail": policy}
    elif kind in ("expect_compound_columns_to_be_unique", "expect_multicolumn_values_to_be_unique"):
        schema["unique_together"].append({"columns": list(kw["column_list"]), "on_fail": policy})
    elif kind in _PAIR:
        a, b = kw["column_A"], kw["column_B"]
        op = ">=" if kind.endswith("greater_than_b") and kw.get("or_equal") else _PAIR[kind]
        rule(f"{a}.{'greater_than' if '>' in op else 'equal_to'}.{b}", f"{col(a)} {op} {col(b)}")
    else:
        return False
    return True
