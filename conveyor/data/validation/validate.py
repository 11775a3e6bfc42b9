"""Validating a table against a schema, with each constraint's policy applied: fail, warn or quarantine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.data.validation.constraints import Columns, Constraint, TableVerdict, compile_schema
from conveyor.data.validation.report import ConstraintResult, ValidationReport
from conveyor.data.validation.schema import Schema
from conveyor.errors import SchemaError, ValidationFailed

if TYPE_CHECKING:
    import pyarrow as pa

#: Columns added to quarantined rows: their row number in the validated table, and the constraints they broke.
ROW_COLUMN, FAILED_COLUMN = "_row", "_failed"
SAMPLE_ROWS = 5


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What validating a table gave: the report, the rows to go on with, the rows set aside."""

    report: ValidationReport
    valid: pa.Table
    quarantined: pa.Table

    @property
    def passed(self) -> bool:
        return self.report.passed


def as_schema(schema: Schema | str | Path | dict[str, Any]) -> Schema:
    """A schema from a Schema, a YAML file path, YAML text or a dict."""
    from conveyor.data.validation.loading import parse_schema, schema_from_dict

    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, dict):
        return schema_from_dict(schema)
    if isinstance(schema, Path) or (isinstance(schema, str) and "\n" not in schema
                                    and (schema.endswith((".yaml", ".yml", ".json")) or Path(schema).is_file())):
        from conveyor.data.validation.loading import load_schema

        return load_schema(schema)
    if isinstance(schema, str):
        return parse_schema(schema)
    raise SchemaError(f"A schema is a Schema, a YAML file path, YAML text or a dict, not {type(schema).__name__}.")


def validate(data: Any, schema: Schema | str | Path | dict[str, Any], *, raise_on_fail: bool = True,
             sample_rows: int = SAMPLE_ROWS) -> ValidationResult:
    """Check ``data`` (Arrow table, DataFrame, dict of columns) against ``schema`` over whole columns.

    Constraints with the ``quarantine`` policy set their offending rows aside (``result.quarantined``,
    with ``_row`` and ``_failed`` columns) and ``result.valid`` holds the rest; ``warn`` only reports.
    When a ``fail`` constraint fails, ValidationFailed names each one with its failing count, share
    and sample row numbers (``raise_on_fail=False`` returns the result instead).
    """
    from conveyor.monitoring.profile import to_arrow

    schema = as_schema(schema)
    table = to_arrow(data)
    constraints = compile_schema(schema)
    columns = Columns(table)
    rows = table.num_rows
    masks: dict[str, np.ndarray] = {}
    results: list[tuple[Constraint, str, int, str]] = []   # constraint, outcome, failed, detail
    for c in constraints:
        outcome = c.check(columns)
        if isinstance(outcome, TableVerdict):
            if outcome.skipped:
                results.append((c, "skipped", 0, outcome.detail))
            elif outcome.failed:
                # a table verdict has no rows to set aside: a quarantine constraint fails instead; a row
                # constraint that could not judge its column (a range over text) counts every row
                results.append((c, "warned" if c.policy == "warn" else "failed", 1 if c.scope == "table" else rows,
                                outcome.detail))
            else:
                results.append((c, "passed", 0, ""))
        elif outcome is None:
            results.append((c, "passed", 0, ""))
        else:
            masks[c.name] = outcome
            count = int(np.count_nonzero(outcome))
            results.append((c, {"fail": "failed", "warn": "warned", "quarantine": "quarantined"}[c.policy], count, ""))
    quarantine = _union([masks[c.name] for c, o, _, _ in results if o == "quarantined"], rows)
    report = ValidationReport(
        schema.name, rows,
        [_result(c, o, n, d, rows, masks.get(c.name), table, sample_rows) for c, o, n, d in results],
        int(quarantine.sum()) if quarantine is not None else 0,
        rows - (int(quarantine.sum()) if quarantine is not None else 0))
    quarantined_names = [c.name for c, o, _, _ in results if o == "quarantined"]
    valid, set_aside = _split(table, quarantine, {n: masks[n] for n in quarantined_names})
    result = ValidationResult(report, valid, set_aside)
    if raise_on_fail and not report.passed:
        raise ValidationFailed(failure_message(report), report=report.to_dict())
    return result


def _union(masks: list[np.ndarray], rows: int) -> np.ndarray | None:
    if not masks:
        return None
    out = masks[0].copy()
    for m in masks[1:]:
        out |= m
    return out


def _result(c: Constraint, outcome: str, failed: int, detail: str, rows: int, mask: np.ndarray | None,
            table: pa.Table, sample_rows: int) -> ConstraintResult:
    sample: list[dict[str, Any]] = []
    if mask is not None and sample_rows:
        idx = np.flatnonzero(mask)[:sample_rows]
        shown = [n for n in c.columns if n in table.column_names]
        ordered = table.select(shown + [n for n in table.column_names if n not in shown])
        # a one-row slice is free; ``take`` on a many-chunk table would concatenate every column first
        sample = [{"row": int(i), **{k: _plain(v) for k, v in ordered.slice(int(i), 1).to_pylist()[0].items()}}
                  for i in idx]
    share = failed / rows if rows and c.scope == "rows" else (1.0 if failed else 0.0)
    return ConstraintResult(c.name, c.kind, c.scope, c.column, c.policy, c.description, outcome, failed,
                            share, detail, sample, list(c.columns))


def _plain(value: Any) -> Any:
    """A JSON-friendly value for a sample cell (dates and times as ISO text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _split(table: pa.Table, quarantine: np.ndarray | None, masks: dict[str, np.ndarray]) -> tuple[pa.Table, pa.Table]:
    import pyarrow as pa

    if quarantine is None:
        empty = table.schema.append(pa.field(ROW_COLUMN, pa.int64())).append(pa.field(FAILED_COLUMN, pa.string()))
        return table, empty.empty_table()
    idx = np.flatnonzero(quarantine)
    reasons = np.full(len(idx), "", dtype=object)
    for name, mask in masks.items():
        hit = mask[idx]
        reasons[hit] = np.where(reasons[hit] == "", name, reasons[hit] + "; " + name)
    set_aside = table.take(idx).append_column(ROW_COLUMN, pa.array(idx, pa.int64())) \
        .append_column(FAILED_COLUMN, pa.array(reasons, pa.string()))
    return table.filter(pa.array(~quarantine)), set_aside


def failure_message(report: ValidationReport) -> str:
    """What a failed validation says: each failing constraint, its count, share and sample rows, and the way out."""
    names = ", ".join(c.name for c in report.failures)
    return (f"{len(report.failures)} constraint(s) with policy fail did not hold ({names}) "
            f"for {report.schema or 'the schema'} over {report.rows:,} rows:\n{report.summary()}\n"
            "Fix the data, or change the constraint or its on_fail policy (warn, quarantine) in the schema.")
