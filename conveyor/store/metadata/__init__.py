"""The metadata store: runs, steps, artifacts, lineage and metrics in any SQLAlchemy database."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from conveyor.store.metadata.artifacts import Artifacts, LineageEdge
from conveyor.store.metadata.automation import Automation
from conveyor.store.metadata.bundles import AbsorbReport, Bundles, ImportedVersion, RecordBundle
from conveyor.store.metadata.connection import Reconnect, create_db_engine, migrate, redact
from conveyor.store.metadata.endpoints import EndpointRecord, Endpoints, KeyRecord
from conveyor.store.metadata.models import AuditRecord, Models, VersionRecord
from conveyor.store.metadata.records import ArtifactRecord, MetricRecord, RunRecord, StepRunRecord
from conveyor.store.metadata.runs import Runs
from conveyor.store.metadata.steps import NewArtifact, StepOutcome, Steps
from conveyor.store.metadata.tracking import Tracking


class MetadataStore:
    """One database, one repository per entity: ``store.runs``, ``.steps``, ``.artifacts``, ``.tracking``, ``.models``."""

    def __init__(self, url: str, *, engine: Engine | None = None, auto_migrate: bool = True,
                 reconnect: Reconnect | None = None) -> None:
        self.url = url
        self.engine = engine or create_db_engine(url, reconnect=reconnect)
        if auto_migrate:
            migrate(self.engine)
        self.runs = Runs(self.engine)
        self.steps = Steps(self.engine)
        self.artifacts = Artifacts(self.engine)
        self.tracking = Tracking(self.engine)
        self.models = Models(self.engine)
        self.endpoints = Endpoints(self.engine)
        self.automation = Automation(self.engine)
        self.bundles = Bundles(self.engine)

    def __repr__(self) -> str:
        return f"MetadataStore({redact(self.url)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


__all__ = ["AbsorbReport", "ImportedVersion", "RecordBundle", "EndpointRecord", "KeyRecord", "ArtifactRecord", "AuditRecord", "VersionRecord", "LineageEdge", "MetadataStore", "MetricRecord", "NewArtifact", "Reconnect", "RunRecord",
           "StepOutcome", "StepRunRecord", "redact"]
