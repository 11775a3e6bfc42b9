"""pandera schemas (the YAML of ``DataFrameSchema.to_yaml()``) as Conveyor schemas, without importing pandera.

Both layouts pandera has written are read: checks listed under a column's ``checks:`` (older
releases) or set on the column itself (0.20 and later), each a value or ``{value:, options:}``.
pandera's defaults carry over: a column is not nullable unless it says so, and is required.
``str_matches`` anchors at the start only (``re.match``), so it becomes ``(?:regex).*``;
``notin`` and ``not_equal_to`` become rules. Data-frame-wide custom checks, regex column names
and index checks have no equivalent and are refused by name; ``coerce`` is ignored (Conveyor checks,
it does not convert).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.data.validation.adapters.common import col, dtype, escape, literal, read_mapping, unsupported
from conveyor.data.validation.schema import Schema

_COLUMN_KEYS = {"dtype", "nullable", "unique", "required", "coerce", "checks", "title", "description", "regex",
                "name", "report_duplicates", "drop_invalid_rows", "default", "metadata"}
_BOUNDS = {"greater_than": ("min", True), "gt": ("min", True), "greater_than_or_equal_to": ("min", False),
           "ge": ("min", False), "less_than": ("max", True), "lt": ("max", True),
           "less_than_or_equal_to": ("max", False), "le": ("max", False)}


def from_pandera(schema: str | Path | dict[str, Any], *, skip_unsupported: bool = False,
        source: str | None = None) -> Schema:
    """A schema with the constraints of a pandera DataFrameSchema (its YAML file path or parsed dict)."""
    from conveyor.data.validation.loading import schema_from_dict

    data, source = read_mapping(schema, source=source, what="pandera schema")
    out: dict[str, Any] = {"name": data.get("name"), "columns": {}, "rules": [], "unique_together": [],
                           "strict": bool(data.get("strict"))}
    left_out: list[str] = []
    if data.get("checks"):
        left_out.append(f"data-frame checks {sorted(data['checks'])}")
    if data.get("index"):
        left_out.append("index checks")
    unique = data.get("unique")
    if unique:
        out["unique_together"].append({"columns": [unique] if isinstance(unique, str) else list(unique)})
    for name, spec in (data.get("columns") or {}).items():
        spec = dict(spec or {})
        where = f"{source}, column {name!r}"
        if spec.get("regex"):
            left_out.append(f"column {name!r}: a regex column name")
            continue
        column: dict[str, Any] = {"type": dtype(spec.get("dtype"), where), "nullable": bool(spec.get("nullable", False)),
                                  "unique": bool(spec.get("unique", False)),
                                  "required": bool(spec.get("required", True))}
        checks = dict(spec.get("checks") or {})
        checks.update({k: v for k, v in spec.items() if k not in _COLUMN_KEYS})
        for check, value in checks.items():
            if not _check(name, check, _value(value), column, out["rules"]):
                left_out.append(f"column {name!r}: check {check}")
        out["columns"][name] = {k: v for k, v in column.items() if v is not None}
    note = unsupported(left_out, source, skip_unsupported, "part(s)")
    if note:
        out["description"] = note
    return schema_from_dict({k: v for k, v in out.items() if v not in (None, [])}, source=source)


def _value(value: Any) -> Any:
    # some releases write a check as {value: ..., options: {...}}; the options (names, ignore_na) change nothing here
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "options"}:
        return value["value"]
    return value


def _check(name: str, check: str, value: Any, column: dict[str, Any], rules: list[dict[str, Any]]) -> bool:
    if check in _BOUNDS:
        side, exclusive = _BOUNDS[check]
        bounds = column.setdefault("range", {})
        bounds[side] = value
        bounds[f"{side}_exclusive"] = exclusive
    elif check == "in_range":
        column["range"] = {"min": value["min_value"], "max": value["max_value"],
                           "min_exclusive": not value.get("include_min", True),
                           "max_exclusive": not value.get("include_max", True)}
    elif check in ("isin", "equal_to", "eq"):
        column["categories"] = list(value) if check == "isin" else [value]
    elif check in ("notin", "not_equal_to", "ne"):
        values = list(value) if check == "notin" else [value]
        rules.append({"name": f"{name}.{check}", "check": f"{col(name)} not in {literal(values)}"})
    elif check == "str_matches":
        column["pattern"] = f"(?s)(?:{value}).*"
    elif check == "str_contains":
        column["pattern"] = f"(?s).*(?:{value}).*"
    elif check == "str_startswith":
        column["pattern"] = f"(?s){escape(value)}.*"
    elif check == "str_endswith":
        column["pattern"] = f"(?s).*{escape(value)}"
    elif check == "str_length":
        exact = value.get("exact_value")
        lo, hi = (exact, exact) if exact is not None else (value.get("min_value"), value.get("max_value"))
        column["length"] = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    else:
        return False
    return True
