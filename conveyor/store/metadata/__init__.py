"""The metadata store: runs, steps, artifacts, lineage and metrics in any SQLAlchemy database.

Names are imported on first use (PEP 562), so code that needs only the plain records, such as a
task that writes its record beside its outputs, never pays for SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.store.metadata.records import ArtifactRecord, MetricRecord, NewArtifact, RunRecord, StepOutcome, StepRunRecord

if TYPE_CHECKING:
    from conveyor.store.metadata.artifacts import LineageEdge
    from conveyor.store.metadata.bundles import AbsorbReport, ImportedVersion, RecordBundle
    from conveyor.store.metadata.connection import Reconnect, redact
    from conveyor.store.metadata.endpoints import EndpointRecord, KeyRecord
    from conveyor.store.metadata.models import AuditRecord, VersionRecord
    from conveyor.store.metadata.store import MetadataStore

_LAZY = {
    "MetadataStore": "conveyor.store.metadata.store", "Reconnect": "conveyor.store.metadata.connection",
    "redact": "conveyor.store.metadata.connection", "create_db_engine": "conveyor.store.metadata.connection",
    "migrate": "conveyor.store.metadata.connection", "LineageEdge": "conveyor.store.metadata.artifacts",
    "Artifacts": "conveyor.store.metadata.artifacts", "EndpointRecord": "conveyor.store.metadata.endpoints",
    "KeyRecord": "conveyor.store.metadata.endpoints", "AuditRecord": "conveyor.store.metadata.models",
    "VersionRecord": "conveyor.store.metadata.models", "Steps": "conveyor.store.metadata.steps",
    "Runs": "conveyor.store.metadata.runs", "AbsorbReport": "conveyor.store.metadata.bundles",
    "Bundles": "conveyor.store.metadata.bundles", "ImportedVersion": "conveyor.store.metadata.bundles",
    "RecordBundle": "conveyor.store.metadata.bundles",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["AbsorbReport", "ImportedVersion", "RecordBundle", "EndpointRecord", "KeyRecord", "ArtifactRecord", "AuditRecord", "VersionRecord", "LineageEdge",
           "MetadataStore", "MetricRecord", "NewArtifact", "Reconnect", "RunRecord", "StepOutcome", "StepRunRecord",
           "redact"]
