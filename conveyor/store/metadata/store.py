"""``MetadataStore``: one database, one repository per entity."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from conveyor.store.metadata.artifacts import Artifacts
from conveyor.store.metadata.connection import Reconnect, create_db_engine, migrate, redact
from conveyor.store.metadata.runs import Runs
from conveyor.store.metadata.steps import Steps
from conveyor.store.metadata.tracking import Tracking

if TYPE_CHECKING:
    from conveyor.store.metadata.automation import Automation
    from conveyor.store.metadata.bundles import Bundles
    from conveyor.store.metadata.datasets import Datasets
    from conveyor.store.metadata.endpoints import Endpoints
    from conveyor.store.metadata.models import Models
    from conveyor.store.metadata.serving_usage import ServingUsage
    from conveyor.store.metadata.trials import Trials
    from conveyor.store.metadata.watermarks import Watermarks


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

    # What a run does not use is imported on first use: an exported task opens the store, runs
    # one step and exits, and pays for the registry's, the server's and the agent's tables only
    # if it touches them.
    @cached_property
    def models(self) -> Models:
        from conveyor.store.metadata.models import Models

        return Models(self.engine)

    @cached_property
    def endpoints(self) -> Endpoints:
        from conveyor.store.metadata.endpoints import Endpoints

        return Endpoints(self.engine)

    @cached_property
    def automation(self) -> Automation:
        from conveyor.store.metadata.automation import Automation

        return Automation(self.engine)

    @cached_property
    def bundles(self) -> Bundles:
        from conveyor.store.metadata.bundles import Bundles

        return Bundles(self.engine)

    @cached_property
    def watermarks(self) -> Watermarks:
        from conveyor.store.metadata.watermarks import Watermarks

        return Watermarks(self.engine)

    @cached_property
    def datasets(self) -> Datasets:
        from conveyor.store.metadata.datasets import Datasets

        return Datasets(self.engine)

    @cached_property
    def trials(self) -> Trials:
        from conveyor.store.metadata.trials import Trials

        return Trials(self.engine)

    @cached_property
    def serving_usage(self) -> ServingUsage:
        from conveyor.store.metadata.serving_usage import ServingUsage

        return ServingUsage(self.engine)

    def __repr__(self) -> str:
        return f"MetadataStore({redact(self.url)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
