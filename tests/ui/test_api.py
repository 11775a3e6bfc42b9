"""The dashboard's JSON API over a real SQLite home with real pipeline runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import make_key
from tests.ui.pipelines import gated_run, training


def test_runs_page_lists_newest_first_with_filters(api: Any, home: Any) -> None:
    page = api.get("/api/runs").json()
    assert page["total"] == 3 and page["next_cursor"] is None
    assert [r["parameters"]["lr"] for r in page["runs"]] == [0.3, 0.2, 0.1]
    assert all(r["pipeline"] == "training" and r["status"] == "succeeded" for r in page["runs"])
    only = api.get("/api/runs", params={"param": "lr=0.2"}).json()
    assert [r["parameters"]["lr"] for r in only["runs"]] == [0.2] and only["total"] == 1
    assert api.get("/api/runs", params={"status": "failed"}).json()["total"] == 0
    assert api.get("/api/runs", params={"pipeline": "nothing"}).json()["runs"] == []
    assert api.get("/api/runs", params={"since": "2999-01-01"}).json()["total"] == 0
    assert api.get("/api/runs", params={"until": "2999-01-01T00:00"}).json()["total"] == 3
    assert api.get("/api/pipelines").json() == ["training"]


def test_runs_keyset_pages_cover_every_run_once(api: Any) -> None:
    seen, cursor = [], None
    while True:
        page = api.get("/api/runs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3
    assert api.get("/api/runs", params={"limit": 2, "offset": 2}).json()["runs"][0]["id"] == seen[2]


def test_tag_filter_reads_the_runs_tags(home: Any, api: Any) -> None:
    run = training.run(seed=9, lr=0.5, client=home, tags={"team": "fraud"})
    assert [r["id"] for r in api.get("/api/runs", params={"tag": "team=fraud"}).json()["runs"]] == [run.id]


def test_bad_filters_are_one_clear_error(api: Any) -> None:
    for params, field in (({"limit": "x"}, "limit"), ({"limit": 0}, "limit"), ({"param": "lr"}, "param"),
                          ({"since": "yesterday"}, "since"), ({"cursor": "!!"}, "cursor")):
        resp = api.get("/api/runs", params=params)
        assert resp.status_code == 400, params
        assert resp.json()["field"] == field and "\n" not in resp.json()["error"]
    resp = api.get("/api/runs/nope")
    assert resp.status_code == 404 and "No run 'nope'" in resp.json()["error"]


def test_run_detail_has_steps_graph_timeline_metrics_and_artifacts(api: Any, home: Any) -> None:
    run_id = api.get("/api/runs", params={"param": "lr=0.1"}).json()["runs"][0]["id"]
    run = api.get(f"/api/runs/{run_id}").json()
    assert [s["name"] for s in run["steps"]] == ["make_data", "train"]
    assert all(s["status"] == "succeeded" and s["duration_s"] >= 0 for s in run["steps"])
    assert run["steps"][1]["cache_miss"]          # it ran: the page says why the cache did not serve it
    assert run["edges"] == [{"from": "make_data", "to": "train", "input": "df"}]
    assert [e["kind"] for e in run["events"]][0] == "started" and run["events"][-1]["kind"] == "succeeded"
    assert run["metrics"]["auc"] == pytest.approx(0.71) and run["metrics"]["loss"] == pytest.approx(1 / (1 + 19 * 0.1))
    assert {a["name"] for a in run["artifacts"]} >= {"model/clf"}
    assert run["environment"]["python"]
    curves = api.get(f"/api/runs/{run_id}/curves").json()
    assert curves["loss"]["x"] == list(range(20)) and curves["loss"]["y"][0] == 1.0
    logs = api.get(f"/api/runs/{run_id}/logs", params={"step": "train"}).json()
    assert "trained with lr=0.1" in logs[0]["text"]
    states = api.get(f"/api/runs/{run_id}/states").json()
    assert states["status"] == "succeeded" and [s["status"] for s in states["steps"]] == ["succeeded"] * 2


def test_run_page_reads_cache_reasons_apart_and_runs_list_shows_last_metrics(api: Any) -> None:
    page = api.get("/api/runs", params={"param": "lr=0.1"}).json()["runs"][0]
    assert page["metrics"]["loss"] == pytest.approx(1 / (1 + 19 * 0.1)) and page["metrics"]["auc"] == pytest.approx(0.71)
    full = api.get(f"/api/runs/{page['id']}").json()
    quick = api.get(f"/api/runs/{page['id']}", params={"explain": "0"}).json()
    assert all(s["cache_miss"] is None for s in quick["steps"]) and quick["edges"] == full["edges"]
    why = api.get(f"/api/runs/{page['id']}/cache-misses").json()
    assert why == {s["name"]: s["cache_miss"] for s in full["steps"] if s["cache_miss"]} and why["train"]
    assert api.get("/api/runs/nope/cache-misses").status_code == 404


def test_a_second_identical_run_shows_cache_hits(api: Any, home: Any) -> None:
    again = training.run(seed=0, lr=0.1, client=home)
    steps = api.get(f"/api/runs/{again.id}").json()["steps"]
    assert [s["cache_hit"] for s in steps] == [True, True] and all(s["cache_miss"] is None for s in steps)


def test_compare_and_curves_of_several_runs(api: Any) -> None:
    ids = [r["id"] for r in api.get("/api/runs").json()["runs"]]
    cmp = api.get("/api/compare", params={"ids": ",".join(ids)}).json()
    assert [r["parameters"]["lr"] for r in cmp["runs"]] == [0.3, 0.2, 0.1]
    assert set(cmp["differing_params"]) == {"lr", "seed"} and "auc" in cmp["differing_metrics"]
    curves = api.get("/api/curves", params={"ids": ",".join(ids), "keys": "loss"}).json()
    assert set(curves) == set(ids) and all(list(c) == ["loss"] and len(c["loss"]["y"]) == 20 for c in curves.values())
    assert api.get("/api/compare").status_code == 400


def test_lineage_goes_from_data_to_model_to_endpoint_and_back(api: Any, home: Any) -> None:
    home.metadata.endpoints.create("fraud", {"routes": [{"model": "clf@production", "weight": 100}]}, "boss")
    back = api.get("/api/lineage/models/clf/1").json()
    assert back["run"]["parameters"] == {"seed": 0, "lr": 0.1}
    assert [i["input"] for i in back["inputs"]] == ["df"]
    assert back["endpoints"] == [{"endpoint": "fraud", "how": "route", "ref": "clf@production"}]
    data_artifact = back["inputs"][0]["artifact"]
    forward = api.get(f"/api/lineage/artifacts/{data_artifact}").json()
    assert forward["upstream"][0]["step"] == "make_data"
    assert forward["downstream"][0]["step"] == "train"
    assert {(m["model"], m["version"]) for m in forward["models"]} == {("clf", 1)}
    assert forward["models"][0]["endpoints"][0]["endpoint"] == "fraud"
    assert api.get("/api/endpoints").json()[0]["name"] == "fraud"


def test_model_page_data_has_versions_approvals_aliases_and_audit(api: Any) -> None:
    m = api.get("/api/models/clf").json()
    assert [v["version"] for v in m["versions"]] == [1, 2, 3]
    assert m["versions"][0]["approval"] == "approved" and m["versions"][0]["approvals"][0]["actor"] == "alice"
    assert m["aliases"] == {"production": 1} and m["protected_aliases"] == ["production"]
    assert m["alias_history"]["production"][0]["version"] == 1
    assert {"approve", "alias"} <= {a["action"] for a in m["audit"]}
    assert api.get("/api/models/none").status_code == 404


def test_open_home_acts_as_the_settings_actor_with_csrf(api: Any, home: Any) -> None:
    """No key in the store: open, as the CLI is; an action still needs the CSRF token."""
    api.get("/runs")                                   # a page hands out the CSRF cookie
    token = api.cookies.get("conveyor_csrf")
    assert token
    refused = api.post("/api/models/clf/versions/2/approve", json={})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    denied = api.post("/api/models/clf/versions/2/approve", json={}, headers={"X-CSRF-Token": token})
    assert denied.status_code == 403 and "lacks the approver role" in denied.json()["error"]
    home.metadata.models.grant(home.settings.actor, "approver", "boss")
    ok = api.post("/api/models/clf/versions/2/approve", json={"comment": "ok"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["approval"] == "approved"
    foreign = api.post("/api/models/clf/versions/3/approve", json={},
                       headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and home.metadata.models.version("clf", 3).approval == "pending"


def test_with_keys_nothing_is_served_without_one(api: Any, keys: Any) -> None:
    for path in ("/api/runs", "/api/models/clf", "/api/openapi.json"):
        assert api.get(path).status_code == 401
    page = api.get("/runs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert api.get("/login").status_code == 200 and api.get("/static/app.js").status_code == 200
    assert api.get("/api/runs", headers={"Authorization": "Bearer cvk_bad_key"}).status_code == 401
    ok = api.get("/api/runs", headers={"Authorization": f"Bearer {keys.viewer}"})
    assert ok.status_code == 200 and ok.json()["total"] == 3
    doc = api.get("/api/openapi.json", headers={"Authorization": f"Bearer {keys.viewer}"}).json()
    assert "/api/runs" in doc["paths"] and "post" in doc["paths"]["/api/models/{name}/versions/{version}/approve"]


def _login(api: Any, key: str) -> str:
    resp = api.post("/login", data={"key": key, "next": "/models/clf"}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/models/clf"
    cookie = resp.headers.get_list("set-cookie")
    session = next(c for c in cookie if c.startswith("conveyor_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
    return api.cookies["conveyor_csrf"]


def test_login_session_approve_and_rollback_as_approver(api: Any, keys: Any, home: Any) -> None:
    csrf = _login(api, keys.approver)
    me = api.get("/api/session").json()
    assert (me["actor"], me["role"], me["auth"]) == ("alice", "approver", "session")
    assert me["csrf_token"] == csrf
    h = {"X-CSRF-Token": csrf}
    assert api.post("/api/models/clf/versions/2/approve", json={}).status_code == 403      # no token
    assert api.post("/api/models/clf/versions/2/approve", json={}, headers={"X-CSRF-Token": "x"}).status_code == 403
    assert api.post("/api/models/clf/versions/2/approve", json={"comment": "better"}, headers=h).json()["approval"] \
        == "approved"
    moved = api.post("/api/models/clf/aliases/production", json={"version": 2}, headers=h).json()
    assert (moved["before"], moved["version"]) == (1, 2)
    back = api.post("/api/models/clf/aliases/production/rollback", json={}, headers=h).json()
    assert (back["before"], back["version"]) == (2, 1)
    assert home.metadata.models.aliases("clf") == {"production": 1}
    unapproved = api.post("/api/models/clf/aliases/production", json={"version": 3}, headers=h)
    assert unapproved.status_code == 403 and "must be approved first" in unapproved.json()["error"]
    bad = api.post("/api/models/clf/aliases/production", json={"version": "two"}, headers=h)
    assert bad.status_code == 400 and bad.json()["field"] == "version"
    rejected = api.post("/api/models/clf/versions/3/reject", json={"comment": "worse"}, headers=h)
    assert rejected.json()["approval"] == "rejected"
    audit = [(a["actor"], a["action"]) for a in api.get("/api/audit").json()]
    assert ("alice", "rollback") in audit and ("alice", "reject") in audit
    assert api.post("/logout", headers=h, follow_redirects=False).status_code == 303
    assert api.get("/api/session").status_code == 401


def test_viewer_sees_but_gets_403_on_actions(api: Any, keys: Any, home: Any) -> None:
    csrf = _login(api, keys.viewer)
    assert api.get("/api/session").json()["role"] == "viewer"
    assert api.get("/api/models/clf").status_code == 200
    for path, body in (("/api/models/clf/versions/2/approve", {}), ("/api/models/clf/aliases/production/rollback", {}),
                       ("/api/models/clf/aliases/staging", {"version": 2})):
        resp = api.post(path, json=body, headers={"X-CSRF-Token": csrf})
        assert resp.status_code == 403, path
    assert home.metadata.models.version("clf", 2).approval == "pending"
    assert "staging" not in home.metadata.models.aliases("clf")
    # a deploy key whose actor holds no role: refused by the registry itself
    nobody = make_key(home, "nobody")
    resp = api.post("/api/models/clf/versions/2/approve", json={}, headers={"Authorization": f"Bearer {nobody}"})
    assert resp.status_code == 403 and "lacks the approver role" in resp.json()["error"]


def test_scripts_act_with_a_bearer_key_without_csrf(api: Any, keys: Any, home: Any) -> None:
    resp = api.post("/api/models/clf/versions/2/approve", json={}, headers={"Authorization": f"Bearer {keys.approver}"})
    assert resp.status_code == 200 and home.metadata.models.version("clf", 2).approval == "approved"


def test_revoked_key_ends_its_session(api: Any, keys: Any, home: Any) -> None:
    _login(api, keys.viewer)
    assert api.get("/api/runs").status_code == 200
    from conveyor.serving.auth import split_key

    home.metadata.endpoints.revoke_key(split_key(keys.viewer)[0], "boss")
    assert api.get("/api/runs").status_code == 401


def test_a_wrong_key_at_login_says_so(api: Any, keys: Any) -> None:
    resp = api.post("/login", data={"key": "cvk_nope_nope"}, follow_redirects=False)
    assert resp.status_code == 303 and "failed=1" in resp.headers["location"]
    assert "conveyor_session" not in api.cookies
    foreign = api.post("/login", data={"key": keys.viewer}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403


def test_pages_are_served_with_security_headers(api: Any) -> None:
    for path in ("/runs", "/models/clf", "/compare", "/lineage", "/endpoints", "/monitoring", "/automation",
                 "/datasets", "/studies"):
        resp = api.get(path)
        assert resp.status_code == 200 and "<script" in resp.text, path
        assert resp.headers["x-frame-options"] == "DENY" and "default-src 'self'" in \
            resp.headers["content-security-policy"]


def test_unknown_api_route_is_a_json_404(api: Any) -> None:
    resp = api.get("/api/nothing/here")
    assert resp.status_code == 404 and "/api/openapi.json" in resp.json()["error"]


def test_dataset_lineage_reaches_the_model_trained_on_it(api: Any, home: Any) -> None:
    import numpy as np
    import pandas as pd

    import conveyor as cv
    from tests.ui.pipelines import from_dataset

    rng = np.random.default_rng(1)
    cv.data.register_dataset("events", pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)}), client=home)
    run = from_dataset.run(ref="events:1", client=home)
    assert [d["name"] for d in api.get("/api/datasets").json()] == ["events"]
    assert api.get("/api/datasets/events").json()["versions"][0]["rows"] == 40
    lin = api.get("/api/lineage/datasets/events/1").json()
    assert {"read"} <= {u["role"] for u in lin["uses"]} and run.id in {u["run"] for u in lin["uses"]}
    assert ("from_data", 1) in {(m["model"], m["version"]) for m in lin["models"]}
    detail = api.get(f"/api/runs/{run.id}").json()
    assert {"dataset": "events", "version": 1, "role": "read"} in [
        {k: d[k] for k in ("dataset", "version", "role")} for d in detail["datasets"]]
    assert api.get("/api/datasets/none").status_code == 404


def test_monitoring_automation_and_studies_read_the_stores(api: Any, home: Any) -> None:
    import time

    from conveyor.store.metadata import StepOutcome

    auto = home.metadata.automation
    auto.create_monitor("fraud-drift", "fraud", 3600, {"kind": "drift"})
    auto.add_check("fraud-drift", "drift", rows=500, drift_share=0.4, findings=[{"column": "a", "drifted": True}])
    auto.raise_alert("fraud-drift", "drift", "2 of 5 columns drifted", {}, 0)
    auto.create_schedule("nightly", "tests.ui.pipelines:training", "0 3 * * *", {"lr": 0.1}, time.time() + 3600)
    auto.fire("schedule", "nightly", {"due": "03:00"})
    mon = api.get("/api/monitoring").json()
    assert mon["monitors"][0]["checks"][0]["drift_share"] == 0.4
    assert mon["alerts"][0]["message"] == "2 of 5 columns drifted"
    a = api.get("/api/automation").json()
    assert a["schedules"][0]["cron"] == "0 3 * * *" and a["firings"][0]["source"] == "schedule:nightly"
    parent = home.list_runs(limit=1)[0].id
    for n, (lr, value) in enumerate(((0.1, 0.8), (0.3, 0.9))):
        rid = home.metadata.trials.open(study="s1", number=n, parent_run_id=parent, parent_step_run_id=None,
                                        parameters={"lr": lr}, pid=1, host="h", sampler=None)
        home.metadata.trials.close(rid, StepOutcome(status="succeeded", metrics=[("value", value, None, time.time())]),
                                   status="succeeded")
    assert api.get("/api/studies").json()[0] | {"started": None} == {
        "name": "s1", "trials": 2, "by_status": {"succeeded": 2}, "started": None}
    study = api.get("/api/studies/s1").json()
    assert [(t["number"], t["parameters"]["lr"], t["metrics"]["value"]) for t in study["trials"]] == [
        (0, 0.1, 0.8), (1, 0.3, 0.9)]
    assert api.get("/api/studies/none").status_code == 404


def test_without_keys_only_this_machines_names_are_answered(home: Any) -> None:
    """A page that rebinds its own name to 127.0.0.1 cannot read an open dashboard."""
    from starlette.testclient import TestClient

    from conveyor.ui.app import create_ui_app

    with TestClient(create_ui_app(home), base_url="http://evil.example:8765") as tc:
        resp = tc.get("/api/runs")
        assert resp.status_code == 403 and "conveyor keys create" in resp.json()["error"]
        assert tc.get("/runs").status_code == 403
    with TestClient(create_ui_app(home), base_url="http://localhost:8765") as tc:
        assert tc.get("/api/runs").json()["total"] == 3
    with TestClient(create_ui_app(home, host="box.lan"), base_url="http://box.lan:8765") as tc:
        assert tc.get("/api/runs").json()["total"] == 3


def test_openapi_describes_query_parameters_and_bodies(api: Any) -> None:
    doc = api.get("/api/openapi.json").json()
    runs = {p["name"]: p for p in doc["paths"]["/api/runs"]["get"]["parameters"]}
    assert {"pipeline", "status", "tag", "param", "since", "until", "limit", "cursor", "offset"} <= set(runs)
    assert runs["tag"]["schema"]["type"] == "array"
    body = doc["paths"]["/api/models/{name}/aliases/{alias}"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["version"]


def test_pages_name_their_scripts_by_version_and_those_are_cached(api: Any) -> None:
    import re

    html = api.get("/runs").text
    src = re.search(r'src="(/static/app\.js\?v=[0-9a-f]{12})"', html).group(1)
    assert api.get(src).headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "immutable" not in api.get("/static/app.js").headers.get("cache-control", "")
    assert api.get("/runs").headers["cache-control"] == "no-store"


def test_compare_and_curves_take_id_prefixes_and_name_unknown_runs(api: Any) -> None:
    ids = [r["id"] for r in api.get("/api/runs").json()["runs"]]
    prefixes = ",".join(i[:8] for i in ids)
    assert [r["id"] for r in api.get("/api/compare", params={"ids": prefixes}).json()["runs"]] == ids
    assert set(api.get("/api/curves", params={"ids": prefixes}).json()) == set(ids)
    missing = api.get("/api/curves", params={"ids": f"{ids[0]},nope"})
    assert missing.status_code == 404 and "No run 'nope'" in missing.json()["error"]


def test_a_failed_run_shows_the_step_error_and_traceback(api: Any, home: Any) -> None:
    from conveyor.errors import StepFailed
    from tests.ui.pipelines import failing

    with pytest.raises(StepFailed):
        failing.run(x=7, client=home)
    page = api.get("/api/runs", params={"status": "failed"}).json()
    assert page["total"] == 1 and page["runs"][0]["pipeline"] == "failing"
    (step,) = api.get(f"/api/runs/{page['runs'][0]['id']}").json()["steps"]
    assert step["status"] == "failed" and "bad input 7" in step["error"] and "ValueError" in step["traceback"]


def test_a_running_run_shows_the_steps_still_to_come_from_its_plan(api: Any, home: Any, tmp_path: Any) -> None:
    import time

    with gated_run(home, tmp_path / "go") as done:
        deadline = time.monotonic() + 30
        run = None
        while time.monotonic() < deadline:
            runs = api.get("/api/runs", params={"pipeline": "gated", "status": "running"}).json()["runs"]
            if runs:
                run = api.get(f"/api/runs/{runs[0]['id']}").json()
                if any(s["status"] == "running" for s in run["steps"]):
                    break
            time.sleep(0.05)
        assert run is not None
        assert {s["name"]: s["status"] for s in run["steps"]} == {"wait_for": "running", "after": "pending"}
        assert {"from": "wait_for", "to": "after", "input": None} in run["edges"]
        assert all(e["kind"] != "plan" for e in run["events"])       # the plan is not a line of history
    final = api.get(f"/api/runs/{done['run'].id}").json()
    assert [s["status"] for s in final["steps"]] == ["succeeded", "succeeded"]
    assert final["edges"] == [{"from": "wait_for", "to": "after", "input": "value"}]   # lineage, no duplicate


def test_endpoints_show_traffic_per_version_and_the_logs_volume(api: Any, home: Any) -> None:
    import time

    import numpy as np

    from conveyor.serving.prediction_log import PredictionLog
    from conveyor.serving.schema import Batch
    from conveyor.store.metadata.serving_usage import UsageRecord

    home.metadata.endpoints.create("churn", {"routes": [{"model": "clf:1", "weight": 90},
                                                        {"model": "clf:2", "weight": 10}]}, "boss")
    now = time.time()
    home.metadata.serving_usage.record([
        UsageRecord("churn", "clf", 1, now - 120, now - 60, 900, 9, 0.45, 1.8, "a"),
        UsageRecord("churn", "clf", 1, now - 60, now, 100, 1, 0.05, 0.2, "b"),
        UsageRecord("churn", "clf", 2, now - 60, now, 50, 0, 0.05, 0.5, "a"),
        UsageRecord("churn", "clf", 2, now - 3 * 86400, now - 2 * 86400, 7, 7, 1.0, 1.0, "a"),   # too old
    ])
    log = PredictionLog(home.settings.artifact_root, interval_s=60)
    for i in range(30):
        log.record(request_id=f"r{i}", ts=now, endpoint="churn", model="clf", version=1, shadow=False,
                   latency_ms=1.0, prediction=np.zeros(2),
                   batch=Batch(None, 2, matrix=np.zeros((2, 3)), names=("a", "b", "c"),
                               dtypes=("float64",) * 3))
    log.close()
    churn = next(e for e in api.get("/api/endpoints").json() if e["name"] == "churn")
    by_version = {u["version"]: u for u in churn["traffic"]}
    assert by_version[1]["requests"] == 1000 and by_version[1]["errors"] == 10
    assert by_version[1]["error_rate"] == pytest.approx(0.01)
    assert by_version[1]["mean_latency_ms"] == pytest.approx(2.0) and by_version[1]["cpu_ms_per_request"] == pytest.approx(0.5)
    assert by_version[2]["requests"] == 50 and by_version[2]["mean_latency_ms"] == pytest.approx(10.0)
    assert churn["prediction_log"]["rows"] == 60 and churn["prediction_log"]["files"] >= 1
    assert churn["prediction_log"]["bytes"] > 0


def test_two_dataset_versions_compared_by_key(api: Any, home: Any) -> None:
    import pandas as pd

    import conveyor as cv

    before = pd.DataFrame({"id": [1, 2, 3, 4], "x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"]})
    after = pd.DataFrame({"id": [2, 3, 4, 5], "x": [2.0, 30.0, 4.0, 5.0], "c": ["b", "a", "b", "a"]})
    cv.data.register_dataset("customers", before, client=home)
    cv.data.register_dataset("customers", after, client=home)
    d = api.get("/api/datasets/customers/diff", params={"a": 1, "b": 2, "key": "id"}).json()
    assert (d["added"], d["removed"], d["changed"]) == (1, 1, 1)
    assert d["changed_by_column"] == {"x": 1, "c": 0} and d["rows"] == [4, 4]
    nokey = api.get("/api/datasets/customers/diff", params={"a": 1, "b": 2}).json()
    assert nokey["changed"] is None
    bad = api.get("/api/datasets/customers/diff", params={"a": "one", "b": 2})
    assert bad.status_code == 400 and bad.json()["field"] == "a"
    missing = api.get("/api/datasets/customers/diff", params={"a": 1, "b": 9})
    assert missing.status_code == 404 and "customers" in missing.json()["error"]
    assert api.get("/api/datasets/nope/diff", params={"a": 1, "b": 2}).status_code == 404


def test_a_monitor_has_its_history_and_an_html_drift_report_of_its_window(api: Any, home: Any) -> None:
    import time

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor.serving.prediction_log import PredictionLog
    from conveyor.serving.schema import Batch

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2_000, 2)), columns=["f0", "f1"])
    home.registry.register("scorer", LogisticRegression().fit(X.to_numpy(), (X["f0"] > 0).astype(int)), data=X)
    home.metadata.endpoints.create("scoring", {"routes": [{"model": "scorer:1", "weight": 100}]}, "boss")
    log = PredictionLog(home.settings.artifact_root, interval_s=60)
    now = time.time()
    for i in range(600):
        row = rng.normal(size=(1, 2)) + np.array([[1.5, 0.0]])          # f0 has moved
        log.record(request_id=f"q{i}", ts=now - 60 + i * 0.05, endpoint="scoring", model="scorer", version=1,
                   shadow=False, latency_ms=1.0, prediction=np.array([1]),
                   batch=Batch(None, 1, matrix=row, names=("f0", "f1"), dtypes=("float64", "float64")))
    log.close()
    auto = home.metadata.automation
    auto.create_monitor("scoring-drift", "scoring", 3600, {"window": "1h", "reference": None, "drift_share": 0.3})
    auto.add_check("scoring-drift", "ok", rows=500, drift_share=0.0, at=now - 120)
    auto.add_check("scoring-drift", "alert", rows=600, drift_share=0.5, at=now - 60,
                   findings=[{"kind": "drift", "share": 0.5, "threshold": 0.3, "columns": ["f0"]}])
    monitors = api.get("/api/monitoring").json()["monitors"]
    m = next(x for x in monitors if x["name"] == "scoring-drift")
    assert [c["drift_share"] for c in m["checks"]] == [0.0, 0.5]                  # oldest first
    page = api.get("/api/monitoring/scoring-drift/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "f0" in page.text and "<svg" in page.text and "drift" in page.text.lower()
    missing = api.get("/api/monitoring/nope/report")
    assert missing.status_code == 404 and "scoring-drift" in missing.json()["error"]


def test_thinned_curves_keep_their_shape_and_ends(api: Any, home: Any) -> None:
    import math

    rid = home.metadata.runs.create(kind="tracking", name="long", parameters={})
    values = [math.sin(s / 40) + (9.0 if s == 1234 else 0.0) - (7.0 if s == 2500 else 0.0) for s in range(3000)]
    home.metadata.tracking.log_metrics(rid, [("loss", v, s) for s, v in enumerate(values)])
    full = api.get("/api/curves", params={"ids": rid}).json()[rid]["loss"]
    assert len(full["x"]) == 3000
    thin = api.get("/api/curves", params={"ids": rid, "points": 200}).json()[rid]["loss"]
    assert 150 <= len(thin["x"]) <= 202 and thin["x"] == sorted(thin["x"])
    assert thin["x"][0] == 0 and thin["x"][-1] == 2999                  # both ends
    assert max(thin["y"]) == max(values) and min(thin["y"]) == min(values)   # the spike and the dip survive
    assert all(values[int(x)] == y for x, y in zip(thin["x"], thin["y"], strict=True))   # real points only
    bad = api.get("/api/curves", params={"ids": rid, "points": "lots"})
    assert bad.status_code == 400 and bad.json()["field"] == "points"
