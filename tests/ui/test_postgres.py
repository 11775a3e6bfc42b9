"""The dashboard's run filters and curves on PostgreSQL, where JSON fields are read with ``->>``."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.ui.pipelines import training


@pytest.mark.postgres
@pytest.mark.slow
def test_filters_pages_and_curves_on_postgres(postgres_url: str, tmp_path: Any, monkeypatch: Any) -> None:
    from starlette.testclient import TestClient

    from conveyor.config import load_settings
    from conveyor.runtime.client import Client
    from conveyor.ui.app import create_ui_app

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    monkeypatch.chdir(tmp_path)
    client = Client(load_settings(env={**env, "CONVEYOR_HOME": str(tmp_path / "home"),
                                       "CONVEYOR_METADATA_URL": postgres_url}, cwd=tmp_path))
    try:
        runs = [training.run(seed=i, lr=lr, client=client, tags={"team": t})
                for i, (lr, t) in enumerate(((0.1, "a"), (0.2, "b"), (0.3, "a")))]
        with TestClient(create_ui_app(client), base_url="http://127.0.0.1") as api:
            assert [r["id"] for r in api.get("/api/runs", params={"tag": "team=a"}).json()["runs"]] == [
                runs[2].id, runs[0].id]
            assert [r["id"] for r in api.get("/api/runs", params={"param": "lr=0.2"}).json()["runs"]] == [runs[1].id]
            first = api.get("/api/runs", params={"limit": 2}).json()
            rest = api.get("/api/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
            assert [r["id"] for r in first["runs"] + rest["runs"]] == [r.id for r in reversed(runs)]
            curves = api.get("/api/curves", params={"ids": ",".join(r.id for r in runs), "keys": "loss"}).json()
            assert all(len(curves[r.id]["loss"]["y"]) == 20 for r in runs)
            detail = api.get(f"/api/runs/{runs[0].id}").json()
            assert detail["edges"] == [{"from": "make_data", "to": "train", "input": "df"}]
    finally:
        client.close()
