"""Prometheus: run and step metrics from the store, served by the agent; the shipped alerting rules
(promtool) and Grafana dashboard query only metrics Conveyor really exposes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import conveyor as cv
from conveyor.observability.metrics import registry_for
from conveyor.serving.server import build_app
from tests.conftest import free_port
from tests.serving.conftest import fitted_pipeline, run_server  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@cv.step
def one(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x


@cv.pipeline
def counted(x: int = 1):
    one(x)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_runs_and_steps_are_counted_from_the_store(client) -> None:
    counted.run(client=client)
    counted.run(client=client)                           # the step is a cache hit
    with pytest.raises(cv.ConveyorError):
        counted.run(x=-1, client=client)
    found = _samples(generate_latest(registry_for(client.metadata)).decode())
    assert found[("conveyor_runs_total", (("pipeline", "counted"), ("status", "succeeded")))] == 2
    assert found[("conveyor_runs_total", (("pipeline", "counted"), ("status", "failed")))] == 1
    assert found[("conveyor_steps_total", (("cache_hit", "true"), ("status", "cached"), ("step", "one")))] == 1
    assert found[("conveyor_steps_total", (("cache_hit", "false"), ("status", "succeeded"), ("step", "one")))] == 1
    assert found[("conveyor_run_duration_seconds_total", (("pipeline", "counted"), ("status", "succeeded")))] > 0


@pytest.mark.slow
def test_the_agent_serves_the_metrics(client, tmp_path: Path) -> None:
    counted.run(client=client)
    port = free_port()
    env = {**os.environ, "CONVEYOR_HOME": str(client.settings.home)}
    agent = subprocess.Popen([str(Path(sys.executable).parent / "conveyor"), "agent", "--tick", "0.5",
                              "--metrics-port", str(port)], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, text = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "conveyor_runs_total" not in text:
            assert agent.poll() is None, agent.stdout.read().decode() if agent.stdout else ""
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                time.sleep(0.2)
        assert _samples(text)[("conveyor_runs_total", (("pipeline", "counted"), ("status", "succeeded")))] == 1
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def test_the_alerting_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/system-packages.sh (make test does), or apt-get install prometheus"
    rules = DEPLOY / "prometheus"
    for cmd in (["check", "rules", "conveyor-alerts.yml"], ["test", "rules", "conveyor-alerts.test.yml"]):
        done = subprocess.run([promtool, *cmd], cwd=rules, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_and_the_rules_query_only_exposed_metrics(client, run_server) -> None:  # noqa: F811
    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, data=X)
    client.registry.set_alias("churn", "staging", v.version)
    client.metadata.endpoints.create("churn-api", {"routes": [{"model": "churn@staging", "weight": 100}],
                                                   "shadows": [], "sticky_header": None}, "test")
    counted.run(client=client)
    server = run_server(build_app(client.settings, access_log=False))
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/invocations", json={"dataframe_records": X.head(2).to_dict(orient="records")}).is_success
        http.post("/invocations", json={"dataframe_records": [{"nope": 1}]})
        exposed = http.get("/metrics").text + generate_latest(registry_for(client.metadata)).decode()
    names = {s.name for family in text_string_to_metric_families(exposed) for s in family.samples}

    dashboard = json.loads((DEPLOY / "grafana" / "conveyor.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "conveyor-alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bconveyor_[a-z_]+", e)}
    assert len(used) >= 10 and used - names == set()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_a_metrics_port_out_of_range_or_taken_is_one_line_naming_the_fix(client, capsys) -> None:
    import socket

    from conveyor.cli.main import main

    for port, expected in (("99999", "is not a TCP port"), (None, "choose a free port")):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            args = ["agent", "--once", "--metrics-port", port or str(taken.getsockname()[1])]
            with pytest.raises(SystemExit) as exit_:
                main(args)
            assert exit_.value.code == 2 and expected in capsys.readouterr().err
