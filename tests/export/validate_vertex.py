"""Vertex AI runs the KFP v2 IR: the same validation, without the Kubernetes platform spec."""

from __future__ import annotations

from conveyor.export import ExportResult
from tests.export import validate_kfp


def validate(result: ExportResult) -> None:
    validate_kfp.validate(result)
