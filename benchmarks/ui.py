"""Dashboard: first rows of 10,000 runs, every curve of 100 runs x 1,000 steps, a 500-step run's graph.

Prints JSON. The same content for Conveyor and (when its peer virtualenv exists, see
``benchmarks/ui_mlflow.py``) MLflow's UI: 10,000 runs with 5 parameters and 5 metrics each and 100
runs with a 1,000-step ``loss`` curve; for Conveyor also one finished 500-step pipeline run. In
Debian's Chromium (Playwright, never its own browser download), from navigation start:

- runs: to the first run row in the DOM (a MutationObserver installed before the page's scripts;
  Conveyor's ``ui:first-rows`` mark too), also filtered by a rare pipeline, a status and a
  parameter. Floor: the same 50 rows read with sqlite3 as a static HTML table.
- curves: to ``ui:curves-drawn`` of ``/compare`` for the 100 runs. Floor: the same curves fetched
  as one JSON array and drawn as canvas polylines by hand.
- graph: to ``ui:graph-drawn`` of ``/runs/{id}`` of the 500-step run.

Ratios: against the floors, and MLflow's times over Conveyor's. The API's own answer times
(in-process, median of 5) are printed too.
Usage: python benchmarks/ui.py [--runs 10000] [--repeat 5] [--steps 500] [--no-mlflow]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
CHROMIUM = "/usr/bin/chromium"


def content(n_runs: int, seed: int = 0) -> dict:
    """What both dashboards get: ``n_runs`` runs with 5 parameters and 5 metrics each (over 20
    pipelines, one rare) and 100 runs with a 1,000-step ``loss`` curve each."""
    rng = random.Random(seed)
    runs = []
    for i in range(n_runs):
        runs.append({"name": "rare" if i % 1000 == 7 else f"pipeline_{i % 19}",
                     "status": rng.choice(["succeeded"] * 8 + ["failed", "cancelled"]),
                     "params": {"lr": round(rng.random(), 3), "depth": i % 10, "batch": 2 ** (i % 8),
                                "optimizer": ["adam", "sgd"][i % 2], "dropout": round(rng.random() / 2, 3)},
                     "metrics": {k: round(rng.random(), 4) for k in ("loss", "acc", "f1", "auc", "rmse")}})
    curves = [{"params": {"lr": round(0.001 * (i + 1), 4)},
               "loss": [math.exp(-s * 0.001 * (i + 1)) for s in range(1000)]} for i in range(100)]
    return {"runs": runs, "curves": curves}


def populate(client: object, data: dict) -> list[str]:
    """The content as pipeline runs (rows straight into the tables, as a runner would leave them),
    then the curve runs through the tracking API, dated before them so /runs opens on the former."""
    from sqlalchemy import insert, update

    from conveyor.store.metadata import tables as t

    md = client.metadata  # type: ignore[attr-defined]
    n = len(data["runs"])
    t0 = time.time() - n
    rows, metrics = [], []
    for i, r in enumerate(data["runs"]):
        rid = uuid.uuid4().hex[:16]
        rows.append(dict(id=rid, kind="pipeline", pipeline_name=r["name"], status=r["status"],
                         parameters=r["params"], tags={"team": f"t{i % 5}"}, options={}, created_at=t0 + i,
                         started_at=t0 + i, ended_at=t0 + i + 1))
        metrics.extend(dict(run_id=rid, key=k, value=v, step=0, at=t0 + i + 1) for k, v in r["metrics"].items())
    with md.runs.write() as conn:
        conn.execute(insert(t.runs), rows)
        for at in range(0, len(metrics), 20000):
            conn.execute(insert(t.metrics), metrics[at:at + 20000])
    ids = []
    for i, c in enumerate(data["curves"]):
        rid = md.runs.create(kind="tracking", name="sweep", parameters=c["params"])
        md.tracking.log_metrics(rid, [("loss", v, s) for s, v in enumerate(c["loss"])])
        md.runs.set_status(rid, "succeeded")
        ids.append(rid)
    with md.runs.write() as conn:
        conn.execute(update(t.runs).where(t.runs.c.id.in_(ids)).values(created_at=t.runs.c.created_at - 10 * n))
    return ids


def pipeline_run(client: object, n_steps: int = 500, width: int = 20) -> str:
    """A finished run of an ``n_steps`` pipeline in layers of ``width``: each step reads the outputs
    of two steps of the layer before. Rows as the runner writes them (step runs, artifacts, lineage)."""
    from sqlalchemy import insert, update

    from conveyor.store.metadata import tables as t

    md = client.metadata  # type: ignore[attr-defined]
    rid = md.runs.create(kind="pipeline", name="wide", parameters={"n": n_steps})
    now = time.time() - 3600
    steps, arts, lin = [], [], []
    for i in range(n_steps):
        layer, j = divmod(i, width)
        sid, aid = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
        name = f"step_{layer}_{j}"
        steps.append(dict(id=sid, run_id=rid, name=name, step=f"step_{layer}", status="succeeded", attempts=1,
                          cache_hit=False, started_at=now + layer, ended_at=now + layer + 0.5, logs=""))
        arts.append(dict(id=aid, content_hash=uuid.uuid4().hex, materializer="json", materializer_version="1",
                         type_name="builtins.dict", size=10, name="out", run_id=rid, step_run_id=sid,
                         created_at=now + layer))
        lin.append(dict(artifact_id=aid, step_run_id=sid, run_id=rid, direction="output", name="out"))
        if layer:
            for k, jj in enumerate((j, (j + 1) % width)):
                src = arts[(layer - 1) * width + jj]["id"]
                lin.append(dict(artifact_id=src, step_run_id=sid, run_id=rid, direction="input", name=f"in{k}"))
    with md.runs.write() as conn:
        conn.execute(insert(t.step_runs), steps)
        conn.execute(insert(t.artifacts), arts)
        conn.execute(insert(t.lineage), lin)
        conn.execute(update(t.runs).where(t.runs.c.id == rid).values(
            status="succeeded", started_at=now, ended_at=now + n_steps / width, created_at=now - 10**8))
    return rid


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


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1), "max": round(max(xs), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--no-mlflow", action="store_true", help="skip MLflow even when its virtualenv exists")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="conveyor-ui-bench-"))
    os.environ["CONVEYOR_HOME"] = str(home)
    from conveyor.runtime.client import Client

    import ui_mlflow

    client = Client()
    data = content(args.runs)
    ids = populate(client, data)
    pid = pipeline_run(client, args.steps)
    result: dict[str, object] = {"runs": args.runs, "params_per_run": 5, "metrics_per_run": 5,
                                 "curves": "100 runs x 1,000 steps", "pipeline_steps": args.steps,
                                 "repeat": args.repeat, "load_average_before": os.getloadavg(),
                                 "api_ms": api_times(client, ids)}
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
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(url + "/runs")                  # warm: the static files into the cache
            page.wait_for_selector("body[data-ready='1']")
            page.close()
            rows_sel = "table[data-testid=runs] tbody tr"
            runs: dict[str, dict[str, float]] = {}
            marks: list[float] = []
            for label, query in {"first page": "", "rare pipeline": "?pipeline=rare", "status failed": "?status=failed",
                                 "param depth=3": "?param=depth%3D3"}.items():
                times = []
                for _ in range(args.repeat):
                    page = ctx.new_page()
                    times.append(ui_mlflow._watched(page, url + "/runs" + query, "rows", rows_sel, 1))
                    page.wait_for_selector("body[data-ready='1']")
                    if not query:
                        marks.append(mark(page, "ui:first-rows"))
                    page.close()
                runs[label] = spread(times)
            page = ctx.new_page()
            page.goto(url + "/login")
            floor = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                page.set_content(floor_rows(db))
                floor.append((time.perf_counter() - t) * 1000)
            floor_ms = statistics.median(floor)
            result["first_rows_ms"] = runs
            result["first_rows_mark_ms"] = spread(marks)
            result["first_rows_floor_ms"] = round(floor_ms, 1)
            result["first_rows_ratio_to_floor"] = round(runs["first page"]["median"] / floor_ms, 2)
            floor_c = [page.evaluate(FLOOR_CURVES % json.dumps("/api/curves?ids=" + ",".join(ids)))
                       for _ in range(args.repeat)]
            page.close()
            curves = []
            for _ in range(args.repeat):
                page = ctx.new_page()
                page.goto(url + "/compare?ids=" + ",".join(ids))
                page.wait_for_selector("body[data-curves=drawn]", timeout=120_000)
                curves.append(mark(page, "ui:curves-drawn"))
                page.close()
            result["curves_drawn_ms"] = spread(curves)
            result["curves_floor_ms"] = round(statistics.median(floor_c), 1)
            result["curves_ratio_to_floor"] = round(statistics.median(curves) / statistics.median(floor_c), 2)
            graph = []
            for _ in range(args.repeat):
                page = ctx.new_page()
                page.goto(url + "/runs/" + pid)
                page.wait_for_selector("body[data-graph=drawn]", timeout=120_000)
                graph.append(mark(page, "ui:graph-drawn"))
                nodes = page.locator("svg[data-testid=run-graph] g[data-node]").count()
                page.wait_for_selector("body[data-ready='1']", timeout=120_000)    # the cache reasons too
                timing = page.evaluate("""() => Object.fromEntries(performance.getEntriesByType('resource')
                  .filter((e) => e.name.includes('/api/')).map((e) => [e.name.split('/api/')[1].split('?')[0]
                  .replace(/^runs\\/[^/]+/, 'runs/ID'), Math.round(e.responseEnd)]))""")
                page.close()
            result["graph_drawn_ms"] = spread(graph)
            result["graph_nodes"] = nodes
            result["graph_api_done_ms"] = timing
            ctx.close()
            if ui_mlflow.available() and not args.no_mlflow:
                print(json.dumps(result), file=sys.stderr, flush=True)     # Conveyor's numbers, whatever follows
                ml = ui_mlflow.measure(browser, data, args.repeat, free_port())
                ml["first_rows_ms"] = spread(ml["first_rows_ms"])
                result["mlflow"] = ml
                result["first_rows_mlflow_over_conveyor"] = round(
                    ml["first_rows_ms"]["median"] / runs["first page"]["median"], 1)
                if ml["curves_drawn_ms"]:
                    ml["curves_drawn_ms"] = spread(ml["curves_drawn_ms"])
                    result["curves_mlflow_over_conveyor"] = round(
                        ml["curves_drawn_ms"]["median"] / statistics.median(curves), 1)
            else:
                result["mlflow"] = "skipped: bash benchmarks/peers/install_peers.sh mlflow"
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
