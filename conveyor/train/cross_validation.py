"""``cv.train.cross_validate``: k-fold scores, each fold reported so a pruner can stop between any two folds.

Reporting fold ``k``'s score as the intermediate value of step ``k`` (not one running value
under a fixed step, nor only the first fold) lets the pruner compare a trial's fold ``k`` with
the other trials' fold ``k``: a trial is stopped at the first fold where it falls behind.
The folds are the same for every trial (fixed ``seed``), so those comparisons are fair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """Per-fold scores and their mean; ``model`` is the last fold's fitted estimator."""

    scores: tuple[float, ...]
    model: Any = None

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def cross_validate(make_model: Callable[[], Any] | Any, X: Any, y: Any, *, folds: int = 5,
                   scoring: str | Callable[..., float] | None = None, trial: Any = None, seed: int = 0,
                   stratified: bool | None = None) -> CrossValidation:
    """Fit and score ``make_model()`` (or a clone of an estimator) on ``folds`` splits of ``X, y``.

    With ``trial``, fold ``k``'s score is reported as step ``k`` and the trial is pruned (raises
    ``optuna.TrialPruned``) as soon as the study's pruner says so, at any fold. ``scoring`` is a
    scikit-learn scorer name or a ``scorer(model, X, y)`` function (default: the model's
    ``score``). ``stratified`` defaults to True for classifiers.
    """
    import numpy as np
    from sklearn.base import clone, is_classifier
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import KFold, StratifiedKFold

    if not isinstance(folds, int) or folds < 2:
        raise ConfigurationError(f"cross_validate: folds must be a whole number of at least 2, got {folds!r}.")
    build = make_model if callable(make_model) and not hasattr(make_model, "fit") else (lambda: clone(make_model))
    probe = build()
    if not hasattr(probe, "fit"):
        raise ConfigurationError(f"cross_validate: {probe!r} has no fit(); pass an estimator or a function making one.")
    if stratified is None:
        stratified = is_classifier(probe)
    splitter = (StratifiedKFold if stratified else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    scorer = scoring if callable(scoring) else check_scoring(probe, scoring=scoring)
    X_arr, y_arr = X, np.asarray(y)
    scores: list[float] = []
    model = None
    for k, (train, test) in enumerate(splitter.split(X_arr, y_arr)):
        model = build()
        model.fit(_rows(X_arr, train), y_arr[train])
        score = float(scorer(model, _rows(X_arr, test), y_arr[test]))
        scores.append(score)
        if trial is not None:
            trial.report(score, k)
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"pruned after fold {k} (score {score:.4g})")
    return CrossValidation(scores=tuple(scores), model=model)


def _rows(X: Any, index: Any) -> Any:
    return X.iloc[index] if hasattr(X, "iloc") else X[index]
