"""gc, storage and the cost report on PostgreSQL: the same SQL holds on the server database."""

from __future__ import annotations

import pytest

from conveyor.config import load_settings
from conveyor.cost.gc import collect
from conveyor.cost.prices import load_prices
from conveyor.cost.report import cost_report
from conveyor.cost.storage import storage_usage
from tests.cost import pipelines as p
from tests.cost.conftest import DAY, add_attempts, age_run

pytestmark = pytest.mark.slow      # starts a PostgreSQL server for the session


def test_gc_storage_and_report_on_postgres(settings, postgres_url: str, monkeypatch) -> None:
    from conveyor.runtime.client import Client

    monkeypatch.setenv("CONVEYOR_METADATA_URL", postgres_url)
    c = Client(load_settings())
    try:
        kept = p.chain.run(client=c, seed=1, tags={"team": "a"})
        old = p.chain.run(client=c, seed=2)
        add_attempts(c.metadata, kept.id, {"load": [(3600.0, 3600.0, 1 << 30, None)]})
        age_run(c.metadata, old.id, 40)
        assert storage_usage(c.metadata, "pipeline")[1] == 6
        report = collect(c.metadata, [c.artifacts], older_than_s=30 * DAY)
        assert report.rows_deleted == 3 and report.objects_deleted == 3
        assert "artifacts_collected" in [k for _a, k, _d in c.metadata.runs.events(old.id)]
        assert storage_usage(c.metadata, "pipeline")[1] == 3
        assert storage_usage(c.metadata, "dataset")[0] == []
        rows = {r.name: r for r in cost_report(c.metadata, load_prices(), since_s=DAY, by="tag").rows}
        assert rows["team=a"].vcpu_hours >= 1.0
        steps = {r.name for r in cost_report(c.metadata, load_prices(), since_s=DAY, by="step").rows}
        assert "chain/load" in steps
    finally:
        c.close()
