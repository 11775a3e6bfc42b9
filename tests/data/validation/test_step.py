"""Validation as a pipeline step: quarantined rows are their own artifact, reports are stored with the run,
and a fail policy fails the run naming the constraint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import conveyor as cv
from conveyor.data.validation.steps import validate_data
from conveyor.errors import StepFailed

SCHEMA = """
name: events
on_fail: quarantine
columns:
  amount: {type: float, range: {min: 0, max: 1000}}
  kind: {categories: [buy, sell], on_fail: POLICY}
"""


@cv.step
def make_events(n: int = 500) -> pa.Table:
    rng = np.random.default_rng(3)
    amount = rng.uniform(0, 900, n)
    amount[[4, 40, 400]] = [-5.0, 2000.0, -0.01]
    kind = rng.choice(["buy", "sell"], n).astype(object)
    kind[[9, 90]] = "hold"
    return pa.table({"amount": amount, "kind": pa.array(kind, pa.string()), "id": np.arange(n)})


@cv.step
def total(valid: pa.Table) -> float:
    return float(np.sum(valid.column("amount").to_numpy()))


@cv.pipeline
def ingest(schema: str = ""):
    checked = validate_data(make_events(), schema=schema)
    total(checked["valid"])


def test_validate_step_quarantines_into_its_own_artifact_and_stores_the_reports(client, tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(SCHEMA.replace("POLICY", "warn"))
    run = ingest.run(schema=str(path), client=client)
    assert run.status == "succeeded"
    quarantined = run.output("validate_data", "quarantined")
    assert sorted(quarantined.column("_row").to_pylist()) == [4, 40, 400]
    assert quarantined.column("id").to_pylist() == quarantined.column("_row").to_pylist()
    valid = run.output("validate_data", "valid")
    assert valid.num_rows == 497 and 4 not in valid.column("id").to_pylist()
    assert run.output("total") == pytest.approx(float(np.sum(valid.column("amount").to_numpy())))
    report = run.output("validate_data", "report")
    kinds = next(c for c in report["constraints"] if c["name"] == "kind.categories")
    assert kinds["outcome"] == "warned" and [s["row"] for s in kinds["sample"]] == [9, 90]
    assert run.metrics["validation_quarantined_rows"] == 3

    step = run.steps["validate_data"]
    stored = client.metadata.steps.outputs([step.id])[step.id]
    assert {"logged/validation_report.json", "logged/validation_report.html"} <= set(stored)
    page = Path(client.load_artifact(stored["logged/validation_report.html"].id)).read_text()
    assert "amount.range" in page and "<svg" in page
    data = json.loads(Path(client.load_artifact(stored["logged/validation_report.json"].id)).read_text())
    assert data == report


def test_validate_step_with_a_fail_policy_fails_the_run_naming_the_constraint(client, tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(SCHEMA.replace("POLICY", "fail"))
    with pytest.raises(StepFailed) as info:
        ingest.run(schema=str(path), client=client).raise_for_status()
    message = str(info.value)
    assert "kind.categories" in message and "2 of 500 rows" in message and "rows 9, 90" in message
    run = client.list_runs(limit=1)[0]
    assert run.status == "failed" and run.steps["validate_data"].status == "failed"
    assert "total" not in run.steps or run.steps["total"].status != "succeeded"
    failed = run.steps["validate_data"]
    kept = client.metadata.steps.outputs([failed.id])[failed.id]
    assert {"logged/validation_report.json", "logged/validation_report.html"} <= set(kept)   # the report stays


def test_report_json_is_plain_data() -> None:
    from conveyor.data.validation import parse_schema, validate

    t = pa.table({"when": pa.array(np.array(["2026-01-01", "2030-01-01"], dtype="datetime64[us]"))})
    schema = parse_schema("on_fail: warn\ncolumns:\n  when: {type: timestamp, range: {max: '2027-01-01'}}\n")
    report = validate(t, schema).report
    assert report.get("when.range").failed == 1
    data = json.loads(json.dumps(report.to_dict()))
    assert next(c for c in data["constraints"] if c["name"] == "when.range")["sample"][0]["when"].startswith("2030")
