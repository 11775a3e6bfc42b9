"""The dashboard in a real Chromium against a real ``conveyor ui`` process and a real store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.ui.browser import browser, page, shot, ui_server  # noqa: F401  (fixtures)
from tests.ui.conftest import make_key
from tests.ui.pipelines import gated_run

pytestmark = pytest.mark.slow


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)


def test_every_page_draws_without_errors(ui_server: Any, page: Any, home: Any) -> None:
    run_id = home.list_runs(limit=1)[0].id
    paths = ["/runs", f"/runs/{run_id}", "/models", "/models/clf", "/lineage?model=clf:1", "/endpoints",
             "/monitoring", "/automation", "/datasets", "/studies", "/compare"]
    for path in paths:
        page.goto(ui_server.url + path)
        _ready(page)
        assert not page.query_selector("[data-testid=error]"), (path, page.inner_text("main"))
        shot(page, "page" + path.replace(run_id, "run").replace("/", "_").replace("?", "_").replace(":", "_"))
    assert page.errors == []
    page.goto(ui_server.url + "/runs")
    _ready(page)
    assert page.locator("[data-testid=runs] tbody tr").count() == 3
    assert page.inner_text("[data-testid=count]") == "3 runs"
    page.goto(ui_server.url + f"/runs/{run_id}")
    _ready(page)
    assert page.locator("[data-testid=run-graph] g[data-node]").count() == 2
    assert page.locator("[data-testid=curves] .uplot").count() == 1          # loss, 20 points
    assert "trained with lr" in page.inner_text("main") or page.locator("details").count() > 0


def test_run_page_follows_a_running_pipeline_to_the_end(ui_server: Any, page: Any, home: Any,
                                                        tmp_path: Path) -> None:
    flag = tmp_path / "go"
    with gated_run(home, flag) as done:
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            running = [r for r in home.list_runs(limit=5, pipeline="gated")]
            if running and home.metadata.steps.for_run(running[0].id):
                break
            time.sleep(0.05)
        run_id = running[0].id
        page.goto(ui_server.url + f"/runs/{run_id}")
        _ready(page)
        page.wait_for_selector("[data-testid=run-status] [data-status=running]")
        page.wait_for_selector("g[data-node=wait_for][data-state=running]")
        assert page.get_attribute("g[data-node=after]", "data-state") == "pending"   # from the run's plan
        shot(page, "live-running")
        flag.write_text("now")
        page.wait_for_selector("body[data-live=done]", timeout=20_000)
        page.wait_for_selector("[data-testid=run-status] [data-status=succeeded]")
        assert page.get_attribute("g[data-node=after]", "data-state") == "succeeded"
        assert page.locator("[data-testid=steps] [data-status=succeeded]").count() == 2
        shot(page, "live-done")
    assert done["run"].status == "succeeded"
    assert page.errors == []


def _hundred_runs(home: Any, points: int = 1000) -> list[str]:
    """100 tracking runs with a 1000-point curve each, written through the store's own API."""
    import math

    ids = []
    for i in range(100):
        rid = home.metadata.runs.create(kind="tracking", name="sweep", parameters={"lr": 0.001 * (i + 1),
                                                                                   "depth": i % 7})
        home.metadata.tracking.log_metrics(rid, [("loss", math.exp(-s * 0.001 * (i + 1)), s) for s in range(points)])
        home.metadata.tracking.log_metrics(rid, [("acc", 1 - 0.5 * math.exp(-i / 30), None)])
        home.metadata.runs.set_status(rid, "succeeded")
        ids.append(rid)
    return ids


def test_compare_a_hundred_runs_draws_every_curve(ui_server: Any, page: Any, home: Any) -> None:
    _hundred_runs(home)
    page.goto(ui_server.url + "/runs")
    _ready(page)
    rows = page.locator("[data-testid=runs] tbody tr")
    assert rows.count() == 50 and page.inner_text("[data-testid=count]") == "103 runs"
    from playwright.sync_api import expect

    first = rows.nth(0).get_attribute("data-run")
    page.click("[data-testid=next-page]")
    expect(page.locator(f"[data-testid=runs] tr[data-run='{first}']")).to_have_count(0)
    page.click("[data-testid=next-page]")
    expect(rows).to_have_count(3)
    assert page.is_disabled("[data-testid=next-page]")
    page.select_option("select[name=pipeline]", "training")
    page.click("[data-testid=filters] button[type=submit]")
    page.wait_for_url("**/runs?pipeline=training")
    _ready(page)
    assert rows.count() == 3
    page.goto(ui_server.url + "/runs?pipeline=sweep&limit=100")
    _ready(page)
    assert rows.count() == 100
    rows.nth(0).locator("input[type=checkbox]").check()
    rows.nth(0).locator("input[type=checkbox]").uncheck()
    page.check("[data-testid=select-page]")
    assert page.inner_text("[data-testid=compare-selected]") == "Compare selected (100)"
    page.click("[data-testid=compare-selected]")
    page.wait_for_selector("body[data-curves=drawn]", timeout=30_000)
    assert page.locator("[data-testid=curves] [data-metric=loss] .uplot").count() == 1
    assert page.locator("[data-testid=parallel]").count() == 1
    assert page.locator("[data-testid=compare-table] thead th").count() == 101
    # uPlot's legend is off for so many series; its series count is what it was handed
    assert page.evaluate("document.querySelectorAll('[data-metric=loss] canvas').length") == 1
    shot(page, "compare-100")
    assert page.errors == []


def _login(page: Any, url: str, key: str) -> None:
    page.goto(url + "/models/clf")
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/models/clf")
    _ready(page)


def test_approver_approves_and_rolls_back_viewer_is_refused(ui_server: Any, browser: Any, home: Any) -> None:
    from tests.ui.conftest import Keys  # noqa: F401

    approver, viewer = make_key(home, "alice"), make_key(home, "victor", "predict")
    ctx = browser.new_context()
    page = ctx.new_page()
    _login(page, ui_server.url, approver)
    assert "alice · approver" in page.inner_text("[data-testid=who]")
    row = page.locator("[data-testid=versions] tr[data-version='2']")
    row.locator("[data-action=approve]").click()
    page.wait_for_selector("[data-testid=versions] tr[data-version='2'] [data-status=approved]")
    page.select_option("select[name=version]", "2")
    page.click("[data-action=move-alias]")
    page.wait_for_selector("[data-testid=aliases] tr[data-alias=production] [data-testid=alias-version]:text-is('2')")
    shot(page, "approver-moved")
    page.click("[data-testid=aliases] tr[data-alias=production] [data-action=rollback]")
    page.wait_for_selector("[data-testid=aliases] tr[data-alias=production] [data-testid=alias-version]:text-is('1')")
    assert home.metadata.models.aliases("clf") == {"production": 1}
    assert home.metadata.models.version("clf", 2).approval == "approved"
    shot(page, "approver-rolled-back")
    ctx.close()

    ctx = browser.new_context()
    page = ctx.new_page()
    _login(page, ui_server.url, viewer)
    assert "victor · viewer" in page.inner_text("[data-testid=who]")
    page.locator("[data-testid=versions] tr[data-version='3'] [data-action=approve]").click()
    page.wait_for_selector("[data-testid=notice].error")
    assert "scope 'predict'" in page.inner_text("[data-testid=notice]")
    page.click("[data-testid=aliases] tr[data-alias=production] [data-action=rollback]")
    page.wait_for_selector("[data-testid=notice].error")
    shot(page, "viewer-refused")
    assert home.metadata.models.version("clf", 3).approval == "pending"
    assert home.metadata.models.aliases("clf") == {"production": 1}
    # a forged cross-site POST with the viewer's cookie is refused too (no token, foreign Origin)
    status = page.evaluate("""async () => (await fetch('/api/models/clf/versions/3/approve',
        {method: 'POST', body: '{}', headers: {'Content-Type': 'application/json'}})).status""")
    assert status == 403
    ctx.close()


def test_a_dataset_page_compares_two_versions(ui_server: Any, page: Any, home: Any) -> None:
    import pandas as pd

    import conveyor as cv

    cv.data.register_dataset("orders", pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0]}), client=home)
    cv.data.register_dataset("orders", pd.DataFrame({"id": [2, 3, 4], "x": [2.0, 9.0, 4.0]}), client=home)
    page.goto(ui_server.url + "/datasets/orders")
    _ready(page)
    page.fill("#diff-key", "id")
    page.click("[data-testid=diff-run]")
    page.wait_for_selector("[data-testid=dataset-diff] p")
    text = page.inner_text("[data-testid=dataset-diff]")
    assert "1 added, 1 removed, 1 changed" in text and "x 1" in text
    shot(page, "dataset-diff")
    assert page.errors == []


def test_the_monitoring_page_charts_each_monitors_checks(ui_server: Any, page: Any, home: Any) -> None:
    import time

    auto = home.metadata.automation
    auto.create_monitor("api-drift", "api", 600, {"window": "1h", "reference": None, "drift_share": 0.3,
                                                  "p99_latency_ms": 50})
    now = time.time()
    for i, share in enumerate([0.0, 0.1, 0.4]):
        auto.add_check("api-drift", "alert" if share > 0.3 else "ok", rows=100, drift_share=share, p99_ms=10.0 + i,
                       at=now - 600 * (3 - i),
                       findings=[{"kind": "drift", "share": share, "threshold": 0.3, "columns": ["x"]}] if share > 0.3
                       else [])
    page.goto(ui_server.url + "/monitoring")
    _ready(page)
    page.wait_for_selector("[data-testid=monitor-history] .uplot")
    assert page.locator("[data-testid=monitor-history] .uplot").count() == 2          # drift share, p99
    assert "drift in x" in page.inner_text("main")
    assert page.get_attribute("[data-testid=drift-report]", "href") == "/api/monitoring/api-drift/report"
    shot(page, "monitoring-history")
    assert page.errors == []
