"""``MetadataStore``: one database, one repository per entity."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from conveyor.store.metadata.artifacts import Artifacts
from conveyor.store.metadata.automation import Automation
from conveyor.store.metadata.bundles import Bundles
from conveyor.store.metadata.connection import Reconnect, create_db_engine, migrate, redact
from conveyor.store.metadata.endpoints import Endpoints
from conveyor.store.metadata.models import Models
from conveyor.store.metadata.runs import Runs
from conveyor.store.metadata.steps import Steps
from conveyor.store.metadata.tracking import Tracking
from conveyor.store.metadata.trials import Trials


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
        self.trials = Trials(self.engine)
        self.models = Models(self.engine)
        self.endpoints = Endpoints(self.engine)
        self.automation = Automation(self.engine)
        self.bundles = Bundles(self.engine)

    def __repr__(self) -> str:
        return f"MetadataStore({redact(self.url)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
