"""Dashboard: time to the first rows of 10,000 runs and to every curve of 100 runs × 1,000 points drawn.

Prints JSON. Two measures in Debian's Chromium (Playwright, never its own browser download), each
against a floor written by hand in the same run:

- runs: from navigation start to the ``ui:first-rows`` mark of ``/runs`` over 10,000 runs (and
  filtered by a rare pipeline, by status, by a parameter, and the 100th page by cursor). Floor: the
  same 50 rows read with sqlite3 and written into a static HTML table that Chromium loads.
- curves: from navigation start to ``ui:curves-drawn`` of ``/compare`` for 100 runs × 1,000 points.
  Floor: the same curves fetched as one JSON array and drawn as canvas polylines by hand.

The API's own answer times (in-process, median of 5) are printed too. An MLflow comparison is left
for later (peer virtualenvs under benchmarks/peers). Usage: python benchmarks/ui.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def populate(client: object, n_runs: int) -> list[str]:
    """``n_runs`` pipeline runs over 20 pipelines (one rare), then 100 tracking runs with curves."""
    from sqlalchemy import insert

    from conveyor.store.metadata import tables as t

    md = client.metadata  # type: ignore[attr-defined]
    rng = random.Random(0)
    t0 = time.time() - n_runs
    rows = []
    for i in range(n_runs):
        name = "rare" if i % 1000 == 7 else f"pipeline_{i % 19}"
        status = rng.choice(["succeeded"] * 8 + ["failed", "cancelled"])
        rows.append(dict(id=uuid.uuid4().hex[:16], kind="pipeline", pipeline_name=name, status=status,
                         parameters={"lr": round(rng.random(), 3), "depth": i % 10}, tags={"team": f"t{i % 5}"},
                         options={}, created_at=t0 + i, started_at=t0 + i, ended_at=t0 + i + rng.random() * 60))
    with md.runs.write() as conn:
        conn.execute(insert(t.runs), rows)
    ids = []
    for i in range(100):
        rid = md.runs.create(kind="tracking", name="sweep", parameters={"lr": 0.001 * (i + 1)})
        md.tracking.log_metrics(rid, [("loss", math.exp(-s * 0.001 * (i + 1)), s) for s in range(1000)])
        md.runs.set_status(rid, "succeeded")
        ids.append(rid)
    return ids


def api_times(client: object, ids: list[str]) -> dict[str, float]:
    from starlette.testclient import TestClient

    from conveyor.ui.app import create_ui_app

    out = {}
    with TestClient(create_ui_app(client), base_url="http://127.0.0.1") as tc:
        cursor = None
        for _ in range(100):
            cursor = tc.get("/api/runs", params={"limit": 50, **({"cursor": cursor} if cursor else {})}).json()[
                "next_cursor"]
        cases = {"first page": {}, "rare pipeline": {"pipeline": "rare"}, "status failed": {"status": "failed"},
                 "param depth=3": {"param": "depth=3"}, "page 100 by cursor": {"cursor": cursor},
                 "page 100 by offset": {"offset": 4950}}
        for label, params in cases.items():
            times = []
            for _ in range(5):
                t = time.perf_counter()
                assert tc.get("/api/runs", params={"limit": 50, **params}).status_code == 200
                times.append((time.perf_counter() - t) * 1000)
            out[label] = round(statistics.median(times), 2)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            tc.get("/api/curves", params={"ids": ",".join(ids)})
            times.append((time.perf_counter() - t) * 1000)
        out["curves 100x1000"] = round(statistics.median(times), 1)
    return out


def floor_rows(db: str) -> str:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, pipeline_name, status, created_at, parameters FROM runs ORDER BY created_at DESC "
                        "LIMIT 50").fetchall()
    conn.close()
    body = "".join(f"<tr><td>{r[0]}</td><td>{r[1]}</td><td>{r[2]}</td><td>{r[3]}</td><td>{r[4]}</td></tr>"
                   for r in rows)
    return (f"<!doctype html><html><body><table>{body}</table><script>performance.mark('floor:rows')</script>"
            "</body></html>")


FLOOR_CURVES = """async () => {
  const t0 = performance.now();
  const data = await (await fetch(%s)).json();
  const c = document.createElement('canvas'); c.width = 600; c.height = 240; document.body.append(c);
  const ctx = c.getContext('2d');
  for (const per of Object.values(data)) { const s = per.loss; ctx.beginPath();
    for (let i = 0; i < s.x.length; i++) { const x = s.x[i] * 0.6, y = 240 - s.y[i] * 240;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); } ctx.stroke(); }
  return performance.now() - t0; }"""


def mark(page: object, name: str) -> float:
    return float(page.evaluate(f"performance.getEntriesByName('{name}')[0].startTime"))  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="conveyor-ui-bench-"))
    os.environ["CONVEYOR_HOME"] = str(home)
    from conveyor.runtime.client import Client

    client = Client()
    ids = populate(client, args.runs)
    result: dict[str, object] = {"runs": args.runs, "api_ms": api_times(client, ids)}
    db = client.metadata.url.replace("sqlite:///", "")
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "conveyor", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(200):
            try:
                httpx.get(url + "/login", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/runs")                  # warm: the static files into the cache
            page.wait_for_selector("body[data-ready='1']")
            runs: dict[str, float] = {}
            for label, query in {"first page": "", "rare pipeline": "?pipeline=rare", "status failed": "?status=failed",
                                 "param depth=3": "?param=depth%3D3"}.items():
                times = []
                for _ in range(args.repeat):
                    page.goto(url + "/runs" + query)
                    page.wait_for_selector("body[data-ready='1']")
                    times.append(mark(page, "ui:first-rows"))
                runs[label] = round(statistics.median(times), 1)
            html = floor_rows(db)
            floor = []
            for _ in range(args.repeat):
                page.goto(url + "/login")
                t = time.perf_counter()
                html = floor_rows(db)
                page.set_content(html)
                floor.append((time.perf_counter() - t) * 1000)
            floor_ms = statistics.median(floor)
            result["first_rows_ms"] = runs
            result["first_rows_floor_ms"] = round(floor_ms, 1)
            result["first_rows_ratio"] = round(runs["first page"] / floor_ms, 2)
            curves = []
            for _ in range(args.repeat):
                page.goto(url + "/compare?ids=" + ",".join(ids))
                page.wait_for_selector("body[data-curves=drawn]", timeout=60_000)
                curves.append(mark(page, "ui:curves-drawn"))
            page.goto(url + "/login")
            floor_c = [page.evaluate(FLOOR_CURVES % json.dumps("/api/curves?ids=" + ",".join(ids)))
                       for _ in range(args.repeat)]
            result["curves_drawn_ms"] = round(statistics.median(curves), 1)
            result["curves_floor_ms"] = round(statistics.median(floor_c), 1)
            result["curves_ratio"] = round(result["curves_drawn_ms"] / result["curves_floor_ms"], 2)  # type: ignore[operator]
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
