"""MLflow's UI on the same content as ``benchmarks/ui.py``: called from it when the peer virtualenv
``benchmarks/peers/.venvs/mlflow`` exists (``bash benchmarks/peers/install_peers.sh mlflow``).

The content goes straight into MLflow's own tables through MLflow's own SQLAlchemy models (in the
peer virtualenv, in a subprocess): creating 10,000 runs one client call at a time takes many
minutes, and how the rows got there does not change what the UI reads. Then a real
``mlflow server`` on SQLite and the same Chromium page measure:

- runs: navigation start to the first row of MLflow's runs table in the DOM
  (``#/experiments/<id>/runs``; the first ``.ag-center-cols-container [role=row]``, seen by a
  MutationObserver installed before the page's scripts).
- curves: navigation start to every run's line drawn on MLflow's metric plot of ``loss`` for 100
  runs (``#/metric/loss?runs=[...]&experiments=[...]``, the page the comparison view links each
  metric to; Plotly draws one ``.scatterlayer .trace`` per run).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

VENV = Path(__file__).resolve().parent / "peers" / ".venvs" / "mlflow"
PY = VENV / "bin" / "python"

POPULATE = r'''
import json, sys, time, uuid
from sqlalchemy import insert
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.store.tracking.dbmodels.models import SqlRun, SqlParam, SqlMetric, SqlLatestMetric, SqlTag

db, art, content = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
store = SqlAlchemyStore("sqlite:///" + db, art)
exp_runs = store.create_experiment("bench-runs")
exp_curves = store.create_experiment("bench-curves")
now = int(time.time() * 1000)
runs, params, metrics, latest, tags = [], [], [], [], []
def add_run(exp, i, name, t0, ps, ms):
    rid = uuid.uuid4().hex
    runs.append(dict(run_uuid=rid, name=name, source_type="LOCAL", source_name="bench", entry_point_name="",
                     user_id="bench", status="FINISHED", start_time=t0, end_time=t0 + 1000, source_version="",
                     lifecycle_stage="active", artifact_uri=f"{art}/{exp}/{rid}/artifacts", experiment_id=int(exp)))
    params.extend(dict(key=k, value=str(v), run_uuid=rid) for k, v in ps.items())
    tags.append(dict(key="mlflow.runName", value=name, run_uuid=rid))
    for key, series in ms.items():
        for step, v in enumerate(series):
            metrics.append(dict(key=key, value=v, timestamp=t0 + step, step=step, is_nan=False, run_uuid=rid))
        latest.append(dict(key=key, value=series[-1], timestamp=t0 + len(series) - 1, step=len(series) - 1,
                           is_nan=False, run_uuid=rid))
    return rid
n = len(content["runs"])
for i, r in enumerate(content["runs"]):
    add_run(exp_runs, i, r["name"], now - (n - i) * 1000, r["params"], {k: [v] for k, v in r["metrics"].items()})
curve_ids = [add_run(exp_curves, i, "sweep", now - 10**7 + i, c["params"], {"loss": c["loss"]})
             for i, c in enumerate(content["curves"])]
with store.ManagedSessionMaker() as s:
    conn = s.connection()
    for model, rows in ((SqlRun, runs), (SqlParam, params), (SqlTag, tags), (SqlMetric, metrics),
                        (SqlLatestMetric, latest)):
        for at in range(0, len(rows), 20000):
            conn.execute(insert(model.__table__), rows[at:at + 20000])
print(json.dumps({"runs_experiment": exp_runs, "curves_experiment": exp_curves, "curve_ids": curve_ids}))
'''

# Records, from before the page's own scripts run, when a selector first matches (count >= n).
WATCH = """window.__seen = {}; window.__watch = (name, sel, n) => {
  const check = () => { if (!window.__seen[name] && document.querySelectorAll(sel).length >= n) {
    window.__seen[name] = performance.now(); obs.disconnect(); } };
  const obs = new MutationObserver(check);
  obs.observe(document, { childList: true, subtree: true }); check(); };"""

RUN_ROW = ".ag-center-cols-container [role=row], .ag-center-cols-container .ag-row"
TRACE = ".js-plotly-plot .scatterlayer .trace"


def available() -> bool:
    return PY.exists()


def _watched(page: object, url: str, name: str, sel: str, n: int, timeout_s: float = 120) -> float:
    page.add_init_script(WATCH + f"window.__watch({json.dumps(name)}, {json.dumps(sel)}, {n});")  # type: ignore[attr-defined]
    page.goto(url)  # type: ignore[attr-defined]
    page.wait_for_function(f"() => window.__seen && window.__seen[{json.dumps(name)}]", timeout=timeout_s * 1000)  # type: ignore[attr-defined]
    return float(page.evaluate(f"() => window.__seen[{json.dumps(name)}]"))  # type: ignore[attr-defined]


def measure(browser: object, content: dict, repeat: int, port: int) -> dict:
    """Populate MLflow with ``content``, start its server and time its runs page and metric plot."""
    home = Path(tempfile.mkdtemp(prefix="conveyor-ui-bench-mlflow-"))
    (home / "content.json").write_text(json.dumps(content))
    (home / "populate.py").write_text(POPULATE)
    db, art = home / "mlflow.db", home / "artifacts"
    t = time.perf_counter()
    out = subprocess.run([str(PY), str(home / "populate.py"), str(db), str(art), str(home / "content.json")],
                         capture_output=True, text=True, check=True, cwd=home)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    result: dict = {"populate_s": round(time.perf_counter() - t, 1)}
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    proc = subprocess.Popen([str(PY), "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                             "--default-artifact-root", str(art), "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=home, env=env, stdout=open(home / "server.log", "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        result["version"] = subprocess.run([str(PY), "-c", "import mlflow; print(mlflow.__version__)"],
                                           capture_output=True, text=True).stdout.strip()
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        page = ctx.new_page()
        runs_url = f"{url}/#/experiments/{info['runs_experiment']}/runs"
        _watched(page, runs_url, "rows", RUN_ROW, 1, timeout_s=300)      # warm: static files into the cache
        page.close()
        first = []
        for _ in range(repeat):
            page = ctx.new_page()
            first.append(_watched(page, runs_url, "rows", RUN_ROW, 1))
            page.screenshot(path=str(home / "runs.png"))
            page.close()
        ids = json.dumps(info["curve_ids"], separators=(",", ":"))
        exps = json.dumps([info["curves_experiment"]])
        # the URL MLflow's own compare view links a metric to (Routes.getMetricPageRoute)
        curves_url = (f"{url}/#/metric/?runs={ids}&metric=%22loss%22&experiments={exps}&plot_metric_keys=%5B%22loss%22%5D"
                      "&plot_layout={}&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=false"
                      "&deselected_curves=[]&last_linear_y_axis_range=[]")
        curves = []
        for _ in range(repeat):
            page = ctx.new_page()
            try:
                curves.append(_watched(page, curves_url, "curves", TRACE, len(info["curve_ids"]), timeout_s=150))
            except Exception as exc:  # noqa: BLE001 - say what failed, keep the other numbers
                result["curves_error"] = str(exc).splitlines()[0]
                page.screenshot(path=str(home / "curves.png"))
                page.close()
                break
            page.screenshot(path=str(home / "curves.png"))
            page.close()
        ctx.close()
        result.update(first_rows_ms=[round(x, 1) for x in first], curves_drawn_ms=[round(x, 1) for x in curves],
                      first_rows_median_ms=round(statistics.median(first), 1),
                      curves_median_ms=round(statistics.median(curves), 1) if curves else None, home=str(home))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return result
