"""The data layer: sources, validation and versioned datasets (``cv.data``).

Public names are imported on first use, so ``import conveyor.data`` stays fast and an optional
driver is only needed by the source that uses it. Each feature adds its names to ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Source": "conveyor.data.sources.base",
    "read": "conveyor.data.sources",
    "open_source": "conveyor.data.sources",
    "sources": "conveyor.data.sources",
    # versioned datasets
    "register_dataset": "conveyor.data.datasets",
    "load_dataset": "conveyor.data.datasets",
    "dataset_manifest": "conveyor.data.datasets",
    "diff_datasets": "conveyor.data.datasets",
    "DatasetCatalog": "conveyor.data.datasets",
    "register_dataset_step": "conveyor.data.dataset_steps",
    "split": "conveyor.data.splits",
    "assign_splits": "conveyor.data.splits",
    "validation": "conveyor.data.validation",
    "Schema": "conveyor.data.validation", "Column": "conveyor.data.validation", "Range": "conveyor.data.validation",
    "Rule": "conveyor.data.validation", "validate": "conveyor.data.validation",
    "load_schema": "conveyor.data.validation", "ValidationReport": "conveyor.data.validation",
    "ValidationResult": "conveyor.data.validation",
    "suggest_schema": "conveyor.data.validation.suggest",
    "validate_data": "conveyor.data.validation.steps",
    "from_great_expectations": "conveyor.data.validation.adapters",
    "from_pandera": "conveyor.data.validation.adapters",
    "read_step": "conveyor.data.steps",
    "incremental": "conveyor.data.watermarks",
    "FileSource": "conveyor.data.sources.files",
    "SQLSource": "conveyor.data.sources.sql",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.data' has no attribute '{name}'")
    target = importlib.import_module(module)
    value = target if module.endswith(f".{name}") else getattr(target, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
