"""Trials as Ray tasks on the session's two-node local cluster."""

from __future__ import annotations

import os
from typing import Any

import pytest

import conveyor as cv
from tests.clusters import RayCluster


@pytest.mark.slow
def test_trials_run_as_ray_tasks_and_report_to_the_study(ray_cluster: RayCluster, client: Any) -> None:
    pytest.importorskip("ray")
    import optuna

    from conveyor.executors.ray_connect import connect
    from conveyor.train.storage import study_storage

    connect(ray_cluster.address)    # the session's connection when other tests made it already

    def objective(trial: Any) -> float:
        import os as worker_os

        import ray as worker_ray

        x = trial.params["x"]
        for epoch in range(3):          # intermediate values go to the study from the worker
            trial.report(x * (epoch + 1), epoch)
            if trial.should_prune():
                raise cv.train.TrialPruned()
        trial.log_params({"pid": worker_os.getpid(),
                          "node": worker_ray.get_runtime_context().get_node_id()})
        trial.set_model({"x": x})
        return -abs(x - 0.3)

    result = cv.tune(objective, {"x": (0.0, 1.0)}, n_trials=6, parallelism=2, executor="ray",
                     sampler="random", seed=2, study_name="on-ray", client=client, progress=False)
    study = optuna.load_study(study_name="on-ray", storage=study_storage(client.metadata.url))
    trials = study.get_trials(deepcopy=False)
    assert result.counts == {"complete": 6, "pruned": 0, "failed": 0}
    assert {t.user_attrs["pid"] for t in trials}.isdisjoint({os.getpid()})
    assert all(sorted(t.intermediate_values) == [0, 1, 2] for t in trials)
    assert result.best_params == study.best_params and result.best_model == {"x": study.best_params["x"]}
    runs = client.metadata.trials.find("on-ray")
    assert all(client.metadata.runs.get(r[0]).status == "succeeded" for r in runs.values()) and len(runs) == 6
