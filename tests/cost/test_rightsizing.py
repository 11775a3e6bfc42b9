"""Right-sizing from the attempts of the last runs, and the fallback to durations when none were measured."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.cost.prices import load_prices
from conveyor.cost.rightsizing import GIB, recommend
from tests.cost import pipelines as p
from tests.cost.conftest import add_attempts, drop_attempts

MIB = 1 << 20


def test_recommend_compares_requests_with_p95_memory_and_peak_cores(client) -> None:
    prices = load_prices()
    rss = [1 * GIB, 1 * GIB, 2 * GIB]
    runs = [p.chain.run(client=client, seed=s) for s in range(3)]
    for run in runs:
        drop_attempts(client.metadata, run.id)       # known measures below; check keeps none (durations only)
    for run, mem, cpu in zip(runs, rss, (10.0, 5.0, 8.0), strict=True):
        add_attempts(client.metadata, run.id, {"load": [(10.0, cpu, mem, None)],
                                               "fit": [(2.0, 7.0, 3 * GIB, None)]})
    steps, run_ids = recommend(p.chain, client.metadata, prices, last=5)
    assert set(run_ids) == {r.id for r in runs}
    by = {s.step: s for s in steps}
    load = by["load"]
    assert load.requested.cpus == 4 and load.requested.memory_bytes == 8 * GIB
    assert load.mean_cores == pytest.approx(23.0 / 30.0) and load.peak_cores == pytest.approx(1.0)
    assert load.p95_memory_bytes == int(np.percentile(rss, 95))
    assert load.recommended.cpus == 1.5                                  # 1.0 peak cores + 25 %, half cores
    want = np.percentile(rss, 95) * 1.25
    assert load.recommended.memory_bytes == int(np.ceil(want / (256 * MIB)) * 256 * MIB)
    assert "over-provisioned CPU" in load.note and "over-provisioned memory" in load.note
    assert load.instances["aws"]["name"] == "t3.medium" and load.instances["gcp"]["name"] == "e2-standard-2"
    assert load.instances["azure"]["name"] == "Standard_F2s_v2"
    fit = by["fit"]                                                      # asks 2 CPUs / 2 GiB, uses 3.5 / 3 GiB
    assert fit.peak_cores == pytest.approx(3.5) and "under-provisioned CPU" in fit.note
    assert "under-provisioned memory" in fit.note and fit.recommended.cpus == 4.5
    assert fit.instances["aws"]["vcpus"] >= 4.5 and fit.instances["aws"]["memory_gib"] >= 3.75
    check = by["check"]                                                  # no attempts: durations only
    assert check.measured == 0 and check.attempts == 3 and check.p95_wall_s is not None
    assert "durations only" in check.note and check.recommended == check.requested


def test_last_n_reads_only_the_newest_runs(client) -> None:
    old = p.chain.run(client=client, seed=10)
    add_attempts(client.metadata, old.id, {"load": [(1.0, 4.0, 6 * GIB, None)]})
    new = p.chain.run(client=client, seed=11)
    add_attempts(client.metadata, new.id, {"load": [(1.0, 1.0, 1 * GIB, None), (1.0, 0.5, 1 * GIB, None)]})
    steps, run_ids = recommend(p.chain, client.metadata, load_prices(), last=1)
    load = next(s for s in steps if s.step == "load")
    assert run_ids == [new.id] and load.attempts == 2 and load.peak_memory_bytes == GIB
    assert load.peak_cores == pytest.approx(1.0)


def test_a_pipeline_without_runs_keeps_its_requests(client) -> None:
    steps, run_ids = recommend(p.chain, client.metadata, load_prices())
    assert run_ids == [] and all(s.attempts == 0 and "no runs" in s.note for s in steps)
    assert {s.step for s in steps} == {"load", "fit", "check"}


def test_recommend_reads_the_attempts_the_executor_measured(client) -> None:
    p.chain.run(client=client, seed=21)
    steps, _runs = recommend(p.chain, client.metadata, load_prices(), last=1)
    load = next(s for s in steps if s.step == "load")
    assert load.attempts == 1 and load.measured == 1 and load.p95_wall_s is not None
    assert load.recommended.cpus is not None and load.instances["aws"] is not None
