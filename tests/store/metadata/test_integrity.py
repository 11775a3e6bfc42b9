"""Constraint violations are conflicts that name the thing, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import Conflict
from conveyor.store.metadata import MetadataStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = MetadataStore(url)
    yield s
    s.close()


def test_a_duplicate_monitor_is_a_conflict_naming_it(store) -> None:
    store.automation.create_monitor("watch", "api", 60.0, {})
    with pytest.raises(Conflict) as info:
        store.automation.create_monitor("watch", "api", 60.0, {})
    assert "'watch' already exists" in str(info.value) and "monitor" in str(info.value)
    assert "unavailable" not in str(info.value).lower()
    assert [m.name for m in store.automation.monitors()] == ["watch"]     # the store is still usable


def test_every_unique_violation_names_its_table_and_value(store) -> None:
    store.automation.add_webhook("hook", "https://example.invalid/a")
    with pytest.raises(Conflict, match=r"A webhook named 'hook' already exists \(unique webhooks\.name\)"):
        store.automation.add_webhook("hook", "https://example.invalid/b")
    store.endpoints.add_key("k1", "digest", "predict", None, None, None, "alice")
    with pytest.raises(Conflict, match=r"An API key with key_id='k1' already exists"):
        store.endpoints.add_key("k1", "digest", "predict", None, None, None, "alice")
    store.models.grant("bob", "approver", "alice")
    with pytest.raises(Conflict, match=r"role grant with actor='bob', role='approver' already exists"):
        with store.models.write() as conn:       # the raw insert, bypassing the repository's own check
            from sqlalchemy import insert

            from conveyor.store.metadata import tables as t

            conn.execute(insert(t.roles).values(actor="bob", role="approver", granted_at=0.0, granted_by="x"))
