"""Training helpers: hyper-parameter tuning as a step (``cv.tune``), cross-validation, search spaces.

Optuna is needed (``pip install 'conveyor[tune]'``); it is imported when a study starts.
"""

from __future__ import annotations

from conveyor.train.cross_validation import CrossValidation, cross_validate
from conveyor.train.space import choice, integer, loguniform, uniform
from conveyor.train.step import tuning_step
from conveyor.train.trial import Trial
from conveyor.train.tuning import TrialSummary, TuneResult, tune


def __getattr__(name: str) -> object:
    if name == "TrialPruned":   # Optuna's, so that `raise cv.train.TrialPruned()` is what pruners expect
        import optuna

        return optuna.TrialPruned
    raise AttributeError(f"module 'conveyor.train' has no attribute '{name}'")


__all__ = ["CrossValidation", "Trial", "TrialPruned", "TrialSummary", "TuneResult", "choice", "cross_validate", "integer",
           "loguniform", "tune", "tuning_step", "uniform"]
