"""Validation as a pipeline step: the valid rows, the quarantined rows and the report as three outputs."""

from __future__ import annotations

from typing import Any

import conveyor as cv


# not cached: the schema is named by path, and its file may change while the path stays the same
@cv.step(cache=False, outputs=("valid", "quarantined", "report"))
def validate_data(data: Any, schema: str, sample_rows: int = 5) -> dict[str, Any]:
    """Validate ``data`` against ``schema`` (a YAML file path or YAML text) with each constraint's policy.

    Outputs ``valid`` (the rows to go on with, an Arrow table), ``quarantined`` (the rows set
    aside, with ``_row`` and ``_failed`` columns: their own artifact) and ``report`` (the report as
    data). The report is also stored with the step as ``validation_report.json`` and
    ``validation_report.html``, and the failing and quarantined shares are logged as metrics.
    A constraint with the ``fail`` policy that fails fails the step, naming the constraint.
    """
    import tempfile
    from pathlib import Path

    import orjson

    from conveyor.data.validation.validate import failure_message, validate
    from conveyor.errors import ValidationFailed

    result = validate(data, schema, raise_on_fail=False, sample_rows=sample_rows)
    report = result.report
    rows = max(report.rows, 1)
    cv.log_metrics({"validation_rows": report.rows, "validation_quarantined_rows": report.quarantined_rows,
                    "validation_quarantined_share": report.quarantined_rows / rows,
                    "validation_failed_constraints": len(report.failures),
                    "validation_warned_constraints": len(report.warnings)})
    folder = Path(tempfile.mkdtemp(prefix="conveyor-validation-"))
    (folder / "validation_report.json").write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
    (folder / "validation_report.html").write_text(report.to_html(), encoding="utf-8")
    cv.log_artifact(folder / "validation_report.json")
    cv.log_artifact(folder / "validation_report.html")
    if not report.passed:
        raise ValidationFailed(failure_message(report), report=report.to_dict())
    return {"valid": result.valid, "quarantined": result.quarantined, "report": report.to_dict()}
