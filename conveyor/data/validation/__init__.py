"""Validation: schemas with constraints, suggested from a profile, checked over whole columns with a policy each.

``cv.data.validate(table, "schema.yaml")`` returns the report, the valid rows and the quarantined
ones (or raises ValidationFailed for a ``fail`` constraint); ``cv.data.suggest_schema(table)`` and
``conveyor data suggest`` propose a commented YAML schema from a reference sample;
``validate_data`` is the same check as a pipeline step.
"""

from __future__ import annotations

from conveyor.data.validation.loading import load_schema, parse_schema
from conveyor.data.validation.report import ConstraintResult, ValidationReport
from conveyor.data.validation.schema import Column, Length, Range, Rows, Rule, Schema, UniqueTogether
from conveyor.data.validation.validate import ValidationResult, validate

__all__ = ["Column", "ConstraintResult", "Length", "Range", "Rows", "Rule", "Schema", "UniqueTogether",
           "ValidationReport", "ValidationResult", "load_schema", "parse_schema", "validate"]
