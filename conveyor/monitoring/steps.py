"""Monitoring as a pipeline step: a drift report whose verdict later steps can branch on."""

from __future__ import annotations

from typing import Any

import conveyor as cv


@cv.step(cache=False)
def drift_report(endpoint: str = "", window: str = "24h", current: str = "", reference: str = "",
                 drift_share: float = 0.3, html_path: str = "") -> dict[str, Any]:
    """Drift of an endpoint's recent traffic (or of the file ``current``) against ``reference``.

    Returns the report as data (``dataset_drift``, ``drifted_columns``, per-column statistics), logs
    the drifted share as a metric and stores the HTML page as an artifact of the step; use it as
    ``with cv.when(report["dataset_drift"]): retrain(...)``.
    """
    import tempfile
    from pathlib import Path

    from conveyor.monitoring.api import drift_report as build
    from conveyor.monitoring.drift import DriftConfig
    from conveyor.monitoring.report import to_html

    report = build(endpoint or None, window=window, current=current or None, reference=reference or None,
                   config=DriftConfig(drift_share=drift_share))
    cv.log_metric("drifted_share", report.drifted_share)
    path = Path(html_path) if html_path else Path(tempfile.mkdtemp()) / "drift_report.html"
    path.write_text(to_html(report, f"Drift report — {endpoint or current}"), encoding="utf-8")
    cv.log_artifact(str(path))
    return report.to_dict()
