"""Monitors, webhooks, schedules and triggers are checked when created: exit code 2, the fix named, nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.automation.monitors import check_monitor, monitor_config
from conveyor.automation.targets import resolve_target
from conveyor.automation.webhooks import check_url
from conveyor.errors import Conflict, InvalidRequest, ParameterError, PipelineDefinitionError
from tests.automation.test_automation import PIPELINE
from tests.cli.test_cli import cli  # noqa: F401  (fixture)

TYPED = '''
import conveyor as cv


@cv.step
def train(rows: int, since: str) -> int:
    return rows


@cv.pipeline
def retrain(rows: int = 100, since: str = "7d"):
    train(rows, since)
'''


@pytest.fixture
def churn_api(client) -> object:
    from tests.monitoring.test_endpoint_monitoring import _register

    _register(Path(client.settings.home))
    client.metadata.endpoints.create("churn-api", {"routes": [{"model": "churn:1", "weight": 100}]},
                                     client.settings.actor)
    return client


BAD_MONITORS = [
    ("nowhere", "1h", {}, "--endpoint 'nowhere' does not exist. Endpoints: churn-api"),
    ("churn-api", "0s", {}, "--every 0s is empty; give a positive duration"),
    ("churn-api", "soon", {}, "--every 'soon' is not a duration"),
    ("churn-api", "1h", {"window": "0m"}, "--window 0m is empty"),
    ("churn-api", "1h", {"below": 0.8}, "--below 0.8 needs the metric it bounds: add --metric"),
    ("churn-api", "1h", {"reference": "churn:7"}, "--reference churn:7: "),
    ("churn-api", "1h", {"reference": "ghost:1"}, "No model 'ghost'"),
    ("churn-api", "1h", {"reference": "/no/such/ref.parquet"}, "no file there"),
    ("churn-api", "1h", {"min_rows": -1}, "--min-rows -1 is negative"),
    ("churn-api", "1h", {"min_labels": -5}, "--min-labels -5 is negative"),
    ("churn-api", "1h", {"p99_latency_ms": 0}, "--p99-latency-ms 0 must be more than 0"),
    ("churn-api", "1h", {"cooldown_s": -1.0}, "--cooldown must not be negative"),
]


def test_a_monitor_that_could_never_check_is_refused_and_a_valid_one_passes(churn_api) -> None:
    for endpoint, every, options, match in BAD_MONITORS:
        with pytest.raises(InvalidRequest) as err:
            check_monitor(churn_api, endpoint, every, monitor_config(**options))
        assert match in str(err.value) and err.value.exit_code == 2
    cfg = monitor_config(window="24h", reference="churn:1", metric="accuracy", below=0.8, min_rows=0)
    assert check_monitor(churn_api, "churn-api", "15m", cfg) == 900.0


@pytest.mark.parametrize("url", ["not-a-url", "ftp://hooks.example.com/x", "http://", "https://host:port/x",
                                 "hooks.example.com/alerts"])
def test_a_webhook_url_must_be_http_or_https_with_a_host(url) -> None:
    with pytest.raises(InvalidRequest, match="http:// or https://|is not a URL"):
        check_url(url)


def test_good_webhook_urls_pass() -> None:
    for url in ("https://hooks.slack.com/services/T/B/X", "http://127.0.0.1:8080/hook"):
        assert check_url(url) == url


def test_targets_are_stored_absolute_and_parameters_checked_against_the_pipeline(tmp_path: Path,
                                                                                monkeypatch) -> None:
    (tmp_path / "flows.py").write_text(TYPED)
    monkeypatch.chdir(tmp_path)
    assert resolve_target("flows.py:retrain", {"rows": "50"}, "schedule") == f"{tmp_path / 'flows.py'}:retrain"
    with pytest.raises(PipelineDefinitionError, match="does not exist"):
        resolve_target("missing.py:retrain", {}, "schedule")
    with pytest.raises(PipelineDefinitionError, match="'retrian' in flows.py is not a pipeline. Pipelines there: retrain"):
        resolve_target("flows.py:retrian", {}, "schedule")
    with pytest.raises(ParameterError, match="has no parameter 'row'.*Did you mean 'rows'"):
        resolve_target("flows.py:retrain", {"row": "50"}, "schedule")
    with pytest.raises(ParameterError, match="rows"):
        resolve_target("flows.py:retrain", {"rows": "many"}, "schedule")
    with pytest.raises(ParameterError, match="rows"):                 # an object path is no row count
        resolve_target("flows.py:retrain", {"rows": "{object}"}, "data")
    with pytest.raises(InvalidRequest, match=r"\{object\} is not something a monitor firing knows"):
        resolve_target("flows.py:retrain", {"since": "{object}"}, "monitor")
    assert resolve_target("flows.py:retrain", {"since": "{monitor}"}, "monitor").endswith("flows.py:retrain")


@pytest.mark.slow
def test_cli_refuses_bad_definitions_with_exit_code_2_and_stores_nothing(cli, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "typed.py").write_text(TYPED)
    bad = cli("monitors", "create", "m", "--endpoint", "nowhere", ok=False)
    assert bad.returncode == 2 and "--endpoint 'nowhere' does not exist" in bad.stderr and "Traceback" not in bad.stderr
    assert json.loads(cli("monitors", "list", "--json").stdout) == []
    bad = cli("webhooks", "add", "ops", "ftp://hooks.example.com/x", ok=False)
    assert bad.returncode == 2 and "http:// or https://" in bad.stderr
    assert json.loads(cli("webhooks", "list", "--json").stdout) == []
    bad = cli("schedules", "create", "typed.py:retrain", "--cron", "0 3 * * *", "-p", "rows=many", ok=False)
    assert bad.returncode == 2 and "rows" in bad.stderr and "checked when the schedule is created" in bad.stderr
    (tmp_path / "inbox").mkdir()
    bad = cli("triggers", "create", "--on", "data:inbox", "--run", "typed.py:retrain", "-p", "size=3", ok=False)
    assert bad.returncode == 2 and "has no parameter 'size'" in bad.stderr
    bad = cli("triggers", "create", "--on", "monitor:ghost", "--run", "typed.py:retrain", ok=False)
    assert bad.returncode == 2 and "no such monitor" in bad.stderr
    assert json.loads(cli("schedules", "list", "--json").stdout) == []
    assert json.loads(cli("triggers", "list", "--json").stdout) == []


def test_alerts_show_their_last_delivery_error(cli, client) -> None:  # noqa: F811
    store = client.metadata.automation
    alert = store.raise_alert("churn-drift", "churn-drift:drift", "drift in x0", {"findings": []}, 3600)
    store.mark_delivery(alert.id, "failed", 5, "ops: HTTP 503")
    (listed,) = json.loads(cli("alerts", "list", "--json").stdout)
    assert listed["id"] == alert.id and listed["last_error"] == "ops: HTTP 503" and listed["attempts"] == 5
    shown = json.loads(cli("alerts", "show", alert.id, "--json").stdout)
    assert shown["last_error"] == "ops: HTTP 503" and shown["delivery"] == "failed"
    assert "last_error: ops: HTTP 503" in cli("alerts", "show", alert.id).stdout


def test_a_monitor_with_a_trigger_is_not_deleted_unless_cascaded(cli, client, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "flow.py").write_text(PIPELINE)
    store = client.metadata.automation
    store.create_monitor("drift", "churn-api", 60, {})
    store.create_trigger("retrain", "monitor", "drift", f"{tmp_path / 'flow.py'}:ingest", {}, 1)
    with pytest.raises(Conflict, match="starts trigger\\(s\\) retrain"):
        store.delete_monitor("drift")
    bad = cli("monitors", "delete", "drift", ok=False)
    assert bad.returncode == 7 and "retrain" in bad.stderr and "--cascade" in bad.stderr
    assert [m.name for m in store.monitors()] == ["drift"] and [t.name for t in store.triggers()] == ["retrain"]
    out = cli("monitors", "delete", "drift", "--cascade").stdout
    assert "Deleted monitor drift and trigger(s) retrain." in out
    assert store.monitors() == [] and store.triggers() == []
