"""A study run as its own process, so that a test can kill it with SIGKILL and run it again.

Each evaluation appends ``<trial number> <x>`` to the file named by argv[1] once it is done.
"""

from __future__ import annotations

import sys
import time

import optuna

import conveyor as cv

LOG = sys.argv[1]
N_TRIALS = int(sys.argv[2])


def objective(trial: cv.train.Trial) -> float:
    time.sleep(0.1)
    x = trial.params["x"]
    with open(LOG, "a") as f:
        f.write(f"{trial.number} {x!r}\n")
    return -(x - 1.0) ** 2


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = cv.tune(objective, {"x": (-5.0, 5.0)}, n_trials=N_TRIALS, parallelism=2, sampler="random", seed=7,
                     study_name="killed", progress=False)
    print("best", result.best_trial, result.counts)
