"""cv.tune and the tuning step: trials as child runs, cross-validation pruned at any fold, the Pareto front."""

from __future__ import annotations

from typing import Any

import pytest

import conveyor as cv
from conveyor.errors import ConfigurationError, Conflict
from tests.train.pipelines import tuned, two_goals


@pytest.mark.slow
def test_tuning_step_outputs_the_winning_trials_model_with_lineage(client: Any) -> None:
    import optuna
    from optuna.trial import TrialState

    from conveyor.train.storage import study_storage

    run = client.run_pipeline(tuned, {"n": 300})
    md = client.metadata
    step = run.steps["search"]
    best_params = run.output("search", "best_params")
    summary = run.output("search", "study")
    model = run.output("search", "best_model")
    assert set(best_params) == {"C"} and 1e-4 <= best_params["C"] <= 1e2
    study = optuna.load_study(study_name=summary["name"], storage=study_storage(md.url))
    assert summary["name"] == f"{run.id}.search"          # named by run and node: a resumed run resumes it
    assert study.best_trial.number == summary["best_trial"] and study.best_params == best_params
    trials = study.get_trials(deepcopy=False)
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 10

    # every fold is reported, and pruning stops trials after the first fold too
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3] for t in complete)
    assert pruned and all(max(t.intermediate_values) >= 1 for t in pruned)
    assert all(len(t.intermediate_values) < 4 for t in pruned)

    # each trial is a child run of the pipeline run, with params, value, fold curve and user metric
    runs = md.trials.find(summary["name"])
    assert sorted(runs) == sorted(t.number for t in trials)
    winner_run = md.runs.get(summary["best_run_id"])
    assert winner_run.kind == "trial" and winner_run.status == "succeeded"
    assert winner_run.tags["parent_run"] == run.id and winner_run.tags["parent_step_run"] == step.id
    assert winner_run.parameters == best_params
    metrics = md.tracking.metrics(winner_run.id)
    assert {m.key for m in metrics} >= {"objective", "intermediate", "fold_min"}
    assert sorted(m.step for m in metrics if m.key == "intermediate") == [0, 1, 2, 3]
    objective = next(m.value for m in metrics if m.key == "objective")
    assert objective == pytest.approx(study.best_value)
    for t in pruned:
        assert md.runs.get(runs[t.number][0]).status == "cancelled"

    # the best model is the winner's: its artifact is the trial run's output, read by the step
    edges = md.artifacts.step_edges(step.id)
    winning = [e for e in edges if e.direction == "input" and e.name == "winning_trial.model"]
    assert len(winning) == 1 and winning[0].artifact_id
    producer = [e for e in md.artifacts.edges(winning[0].artifact_id) if e.direction == "output"]
    assert [e.run_id for e in producer] == [winner_run.id]
    data = run.output("make_data")
    assert model.C == pytest.approx(best_params["C"])
    assert model.score(data.drop(columns="y"), data["y"]) > 0.6
    assert run.metrics["best_objective"] == pytest.approx(study.best_value)


@pytest.mark.slow
def test_multi_objective_study_on_processes_returns_the_pareto_front(client: Any) -> None:
    result = cv.tune(two_goals, {"x": (-2.0, 3.0), "k": [0, 1, 2]}, n_trials=16, parallelism=2,
                     direction=["maximize", "minimize"], metric_names=["quality", "cost"], executor="process",
                     sampler="random", seed=1, study_name="goals", client=client, progress=False)
    import optuna
    from optuna.trial import TrialState

    from conveyor.train.storage import study_storage

    study = optuna.load_study(study_name="goals", storage=study_storage(client.metadata.url))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(complete) == 16 and result.counts == {"complete": 16, "pruned": 0, "failed": 0}

    def dominated(v: tuple[float, ...]) -> bool:
        return any(o.values[0] >= v[0] and o.values[1] <= v[1] and tuple(o.values) != v for o in complete)

    front = {t.number for t in result.pareto_front}
    assert front == {t.number for t in complete if not dominated(tuple(t.values))}
    for t in result.pareto_front:
        run = client.metadata.runs.get(t.run_id)
        assert run.parameters == t.params
        assert client.metadata.tracking.latest_metrics(t.run_id) == pytest.approx(
            {"quality": t.values[0], "cost": t.values[1]})
    parent = client.metadata.runs.get(client.metadata.runs.get(result.best_run_id).tags["parent_run"])
    assert parent.kind == "tuning" and parent.status == "succeeded"


def test_bad_settings_are_refused_and_leave_nothing(client: Any) -> None:
    def objective(trial: Any) -> float:
        return trial.params["x"]

    md = client.metadata
    space = {"x": (0.0, 1.0)}
    bad = [dict(n_trials=0), dict(n_trials=3, parallelism=0), dict(n_trials=3, direction="up"),
           dict(n_trials=3, sampler="annealing"), dict(n_trials=3, pruner=object())]
    for kwargs in bad:
        with pytest.raises(ConfigurationError):
            cv.tune(objective, space, client=client, progress=False, **kwargs)
    for wrong in (lambda: {"x": (1.0, 0.0)}, lambda: {"x": "wide"}, lambda: {"x": cv.train.loguniform(0, 1)},
                  lambda: {"x": [object()]}):
        with pytest.raises(ConfigurationError):
            cv.tune(objective, wrong(), n_trials=2, client=client, progress=False)
    assert md.runs.list() == []
    cv.tune(objective, space, n_trials=2, study_name="once", client=client, progress=False)
    before = len(md.runs.list())
    with pytest.raises(Conflict, match="directions"):
        cv.tune(objective, space, n_trials=4, study_name="once", direction="minimize", client=client, progress=False)
    assert len(md.runs.list()) == before


def test_a_failing_objective_fails_its_trial_not_the_study(client: Any) -> None:
    def objective(trial: Any) -> float:
        if trial.params["x"] > 0.5:
            raise ValueError("too large")
        return trial.params["x"]

    result = cv.tune(objective, {"x": (0.0, 1.0)}, n_trials=10, sampler="random", seed=0, client=client,
                     progress=False)
    assert result.counts["complete"] + result.counts["failed"] == 10 and result.counts["failed"] > 0
    assert result.best_value <= 0.5 and result.best_model is None
    failed = [r for r in client.metadata.runs.list() if r.kind == "trial" and r.status == "failed"]
    assert len(failed) == result.counts["failed"] and all("too large" in (r.error or "") for r in failed)


def test_a_worker_makes_the_asked_trial_from_the_coordinators_frozen_trial_as_optuna_would(
        client: Any, monkeypatch) -> None:
    import optuna

    from conveyor.train import trial as trial_module
    from conveyor.train.storage import study_storage

    storage = study_storage(client.metadata.url)
    coordinator = optuna.create_study(study_name="frozen-made", storage=storage,
                                      pruner=optuna.pruners.MedianPruner(n_startup_trials=0))
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    asked = [coordinator.ask(fixed_distributions=space) for _ in range(3)]
    worker = optuna.load_study(study_name="frozen-made", storage=study_storage(client.metadata.url))
    monkeypatch.setattr(trial_module, "_made_from_frozen", None)
    first = trial_module._worker_trial(worker, asked[0]._trial_id, asked[0]._cached_frozen_trial)
    assert trial_module._made_from_frozen is True     # the first made the documented way, and checked
    documented = optuna.trial.Trial(worker, asked[1]._trial_id)
    made = trial_module._worker_trial(worker, asked[1]._trial_id, asked[1]._cached_frozen_trial)
    assert set(vars(made)) == set(vars(documented)) == set(vars(first))
    assert made.number == documented.number and made.params == documented.params == asked[1].params
    assert made._fixed_params == documented._fixed_params
    assert made.distributions == documented.distributions
    made.report(0.5, 0)                               # written to the study, seen by the coordinator
    assert coordinator.trials[1].intermediate_values == {0: 0.5}
    assert made.should_prune() is False               # the pruner reads the study through it

    monkeypatch.setattr(trial_module, "_made_from_frozen", None)
    monkeypatch.setattr(trial_module, "_TRIAL_FIELDS", frozenset({"an", "other", "optuna"}))
    trial_module._worker_trial(worker, asked[2]._trial_id, asked[2]._cached_frozen_trial)
    assert trial_module._made_from_frozen is False    # fields it does not know: always the documented way
