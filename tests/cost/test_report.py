"""The cost report: compute hours x price, storage bytes x price, serving CPU per 1,000 requests."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import insert

from conveyor.cost.prices import load_prices
from conveyor.cost.report import cost_report
from conveyor.cost.storage import storage_usage
from conveyor.errors import InvalidRequest
from conveyor.store.metadata import tables as t
from tests.cost import pipelines as p
from tests.cost.conftest import DAY, add_attempts, age_run, drop_attempts

MONTH = 30.44 * DAY


def _run(client, seed: int, tags: dict[str, str]):
    run = client.run_pipeline(p.chain, {"seed": seed}, tags=tags)
    add_attempts(client.metadata, run.id, {"load": [(3600.0, 7200.0, 1 << 30, None)],   # 2 vCPU-hours
                                           "fit": [(1800.0, 900.0, 1 << 29, None)],     # 0.5 (one core held)
                                           "check": [(60.0, 30.0, None, 36.0)]})        # + 0.01 GPU-hour
    return run


def _serve(client, endpoint: str, model: str, requests: int, cpu_s: float) -> None:
    now = time.time()
    with client.metadata.artifacts.write() as conn:
        conn.execute(insert(t.serving_usage).values(endpoint=endpoint, model=model, version=1, period_start=now - 60,
                                                    period_end=now, requests=requests, errors=0, cpu_s=cpu_s,
                                                    wall_s=60.0, host="h"))


def test_report_by_pipeline_prices_compute_storage_and_serving(client) -> None:
    prices = load_prices()
    aws = prices.cloud("aws")
    _run(client, 1, {"team": "a"})
    _serve(client, "churn", "m", 2000, 72.0)
    report = cost_report(client.metadata, prices, since_s=MONTH, by="pipeline", cloud="aws")
    rows = {r.name: r for r in report.rows}
    chain = rows["chain"]
    vcpu_h = 2.0 + 0.5 + 60.0 / 3600
    assert chain.vcpu_hours == pytest.approx(vcpu_h)
    assert chain.gpu_hours == pytest.approx(0.01)
    assert chain.compute == pytest.approx(vcpu_h * aws.vcpu_hour() + 0.01 * aws.gpu_hour())
    stored = storage_usage(client.metadata, "pipeline")[0][0]
    assert chain.storage_bytes == stored.bytes > 0
    assert chain.storage == pytest.approx(stored.bytes / 1e9 * aws.storage_class().per_gb_month)   # one month
    serving = rows["(serving)"]
    assert serving.requests == 2000 and serving.cpu_s_per_1k_requests == pytest.approx(36.0)
    assert serving.serving == pytest.approx(72.0 / 3600 * aws.vcpu_hour())
    data = report.to_dict()
    assert data["estimate"] is True and data["prices_as_of"] == prices.as_of.isoformat()
    assert "Estimates, not a bill" in report.note and prices.as_of.isoformat() in report.note
    assert data["total"] == pytest.approx(chain.total + serving.total, abs=1e-5)


def test_report_by_tag_model_step_and_endpoint(client) -> None:
    prices = load_prices()
    a = _run(client, 1, {"team": "a"})
    _run(client, 2, {"team": "b", "env": "prod"})
    client.registry.register("m", artifact_id=client.metadata.artifacts.for_run(a.id)[1][2].id, run_id=a.id)
    _serve(client, "churn", "m", 1000, 10.0)
    _serve(client, "fraud", "f", 500, 5.0)
    one = 2.0 + 0.5 + 60.0 / 3600
    tags = {r.name: r for r in cost_report(client.metadata, prices, since_s=DAY, by="tag").rows}
    assert tags["team=a"].vcpu_hours == pytest.approx(one) and tags["env=prod"].vcpu_hours == pytest.approx(one)
    assert tags["(untagged)"].requests == 1500            # endpoints without tags
    models = {r.name: r for r in cost_report(client.metadata, prices, since_s=DAY, by="model").rows}
    assert models["m"].vcpu_hours == pytest.approx(one) and models["(no model)"].vcpu_hours == pytest.approx(one)
    assert models["m"].requests == 1000 and models["f"].requests == 500 and models["m"].storage_bytes > 0
    steps = {r.name: r for r in cost_report(client.metadata, prices, since_s=DAY, by="step").rows}
    assert steps["chain/load"].vcpu_hours == pytest.approx(4.0) and steps["chain/fit"].vcpu_hours == pytest.approx(1.0)
    ends = {r.name: r for r in cost_report(client.metadata, prices, since_s=DAY, by="endpoint", cloud="gcp").rows}
    assert ends["churn"].cpu_s_per_1k_requests == pytest.approx(10.0) and ends["fraud"].requests == 500
    gcp = prices.cloud("gcp")
    assert ends["(pipelines)"].compute == pytest.approx(2 * one * gcp.vcpu_hour() + 0.02 * gcp.gpu_hour())


def test_the_window_leaves_older_runs_out_and_unmeasured_steps_count_their_duration(client) -> None:
    prices = load_prices()
    old = _run(client, 1, {})
    age_run(client.metadata, old.id, 40)
    plain = p.chain.run(client=client, seed=3)
    drop_attempts(client.metadata, plain.id)                   # recorded before attempts were measured
    report = cost_report(client.metadata, prices, since_s=30 * DAY, by="pipeline")
    chain = next(r for r in report.rows if r.name == "chain")
    durations = sum((s.ended_at - s.started_at) for s in client.metadata.steps.for_run(plain.id))
    assert report.unmeasured_attempts == 3 and chain.vcpu_hours == pytest.approx(durations / 3600)
    with pytest.raises(InvalidRequest, match="--by 'team'"):
        cost_report(client.metadata, prices, since_s=DAY, by="team")
