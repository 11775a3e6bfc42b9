"""Objectives and a pipeline for the tuning tests; module-level so worker processes can import them."""

from __future__ import annotations

from typing import Any

import optuna

import conveyor as cv


def cv_objective(trial: cv.train.Trial, data: Any) -> float:
    """Logistic regression's C by 4-fold cross-validation, each fold reported (and pruned on)."""
    from sklearn.linear_model import LogisticRegression

    C = trial.params["C"]
    result = cv.train.cross_validate(lambda: LogisticRegression(C=C, max_iter=200), data.drop(columns="y"), data["y"],
                                     folds=4, trial=trial, seed=0)
    cv.log_metric("fold_min", min(result.scores))
    trial.set_model(result.model)
    return result.mean


@cv.step
def make_data(n: int) -> Any:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=8, n_informative=4, flip_y=0.05, random_state=0)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(8)]).assign(y=y)


search = cv.train.tuning_step(cv_objective, space={"C": cv.train.loguniform(1e-4, 1e2)}, n_trials=10,
                              parallelism=2, sampler="random", seed=3,
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
                              name="search")


@cv.pipeline
def tuned(n: int = 300) -> Any:
    best_params, best_model, study = search(data=make_data(n))
    return best_model


def two_goals(trial: cv.train.Trial) -> tuple[float, float]:
    """Accuracy-like and cost-like goals that pull x in opposite directions."""
    x, k = trial.params["x"], trial.params["k"]
    return 1.0 - (x - 1.0) ** 2 - 0.1 * k, x * x + k
