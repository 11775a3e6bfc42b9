"""Schemas users already have, used as they are: Great Expectations suites and pandera schemas.

Both are translated from their serialised forms (a suite's JSON, pandera's ``to_yaml()``) into
Conveyor constraints, without importing either library, so they need not be installed and their
pins never meet ours. What has no Conveyor equivalent is refused with the expectation or check
named (``skip_unsupported=True`` leaves it out and says so in the schema's description).
"""

from __future__ import annotations

from typing import Any

from conveyor.data.validation.adapters.great_expectations import from_great_expectations
from conveyor.data.validation.adapters.pandera import from_pandera


def adapter_for(data: dict[str, Any]) -> str | None:
    """``great_expectations`` or ``pandera`` when parsed schema data is in that library's form, else None."""
    if isinstance(data.get("expectations"), list):
        return "great_expectations"
    if "schema_type" in data:
        return "pandera"
    return None


__all__ = ["adapter_for", "from_great_expectations", "from_pandera"]
