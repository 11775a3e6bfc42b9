"""Tuning overhead: ``cv.tune`` against a bare Optuna loop on the same storage, and against Ray Tune.

Workload: ``BENCH_TRIALS`` (default 200) trials of a 10 ms objective over two parameters, 2 in
parallel, RandomSampler(seed=0) everywhere (so the sampler's own cost is the same for all and
small). Storage: Optuna's RDB storage on the Conveyor home's SQLite metadata database.

- floor: ``study.optimize(objective, n_trials, n_jobs=2)`` by hand on that storage;
- conveyor (threads): ``cv.tune(..., parallelism=2)``: the same study plus a child run per trial
  (run, step run, params, metrics, events) in the same database;
- conveyor (ray): the same on a local 2-CPU Ray instance, each trial a Ray task;
- Ray Tune: ``Tuner`` with ``OptunaSearch`` on the same storage, ``max_concurrent_trials=2``, on
  that Ray instance (skipped when ``ray[tune]`` is not importable).

The floor and ``cv.tune`` on threads take turns for ``BENCH_ROUNDS`` rounds (default 3; each a new
study of ``BENCH_TRIALS``); their figures are the medians, with each round's overhead. Then, with
Ray up, the floor and ``cv.tune`` on Ray take turns for as many rounds (Ray's processes share the
machine with both); Ray Tune runs once after them (``BENCH_SKIP_RAY_TUNE=1`` leaves it out,
``BENCH_SKIP_RAY=1`` all of Ray). Overhead per trial = (wall time - floor wall time) / trials, in
milliseconds of wall clock (with 2 trials in parallel a worker spends up to twice that). Prints one
JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRIALS = int(os.environ.get("BENCH_TRIALS", "200"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PARALLEL = 2
SLEEP_S = 0.010


def conveyor_objective(trial: Any) -> float:
    time.sleep(SLEEP_S)
    return -(trial.params["x"] - 1.0) ** 2 - 0.01 * trial.params["n"]


def bare_objective(trial: Any) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    n = trial.suggest_int("n", 1, 10)
    time.sleep(SLEEP_S)
    return -(x - 1.0) ** 2 - 0.01 * n


def ray_tune_trainable(config: dict[str, Any]) -> dict[str, float]:
    time.sleep(SLEEP_S)
    return {"score": -(config["x"] - 1.0) ** 2 - 0.01 * config["n"]}


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cv-bench-tune-"))
    os.environ["CONVEYOR_HOME"] = str(home)
    import optuna

    import conveyor as cv
    from conveyor.train.storage import study_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = cv.Client()
    url = client.metadata.url
    storage = study_storage(url)
    space = {"x": cv.train.uniform(-3.0, 3.0), "n": cv.train.integer(1, 10)}
    out: dict[str, Any] = {"benchmark": "tuning", "trials": TRIALS, "parallel": PARALLEL,
                           "objective_ms": SLEEP_S * 1000, "storage": "sqlite (the metadata database)"}

    # warm both paths once (imports, environment capture, table creation), untimed
    optuna.create_study(study_name="warm-bare", storage=storage).optimize(bare_objective, n_trials=2)
    cv.tune(conveyor_objective, space, n_trials=2, study_name="warm-cv", client=client, progress=False)

    def timed_floor(name: str) -> float:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        t0 = time.perf_counter()
        study.optimize(bare_objective, n_trials=TRIALS, n_jobs=PARALLEL)
        return time.perf_counter() - t0

    def timed_cv(executor: str, name: str) -> float:
        t = time.perf_counter()
        result = cv.tune(conveyor_objective, space, n_trials=TRIALS, parallelism=PARALLEL, study_name=name,
                         sampler=optuna.samplers.RandomSampler(seed=0), executor=executor, client=client,
                         progress=False)
        assert result.counts["complete"] == TRIALS, result.counts
        return time.perf_counter() - t

    floors, walls = [], []
    for r in range(ROUNDS):
        floors.append(timed_floor(f"bare-{r}"))
        walls.append(timed_cv("thread", f"conveyor-threads-{r}"))
    floor, wall = statistics.median(floors), statistics.median(walls)
    out["rounds"] = ROUNDS
    out["floor_optuna_s"] = round(floor, 3)
    out["floor_optuna_s_by_round"] = [round(x, 3) for x in floors]
    out["floor_ms_per_trial"] = round(1000 * floor / TRIALS, 2)
    out["conveyor_threads_s"] = round(wall, 3)
    out["conveyor_threads_s_by_round"] = [round(x, 3) for x in walls]
    out["conveyor_threads_overhead_ms_per_trial"] = round(1000 * (wall - floor) / TRIALS, 2)
    out["conveyor_threads_overhead_ms_per_trial_by_round"] = [round(1000 * (w - f) / TRIALS, 2)
                                                              for f, w in zip(floors, walls)]
    out["conveyor_threads_vs_floor"] = round(wall / floor, 3)
    out["load_average_1m_after_rounds"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out), file=sys.stderr, flush=True)   # so far, in case a peer hangs

    try:
        if os.environ.get("BENCH_SKIP_RAY"):
            raise ImportError("BENCH_SKIP_RAY is set")
        import ray
    except ImportError as exc:
        out["ray"] = f"skipped: {exc}"
        print(json.dumps(out, indent=2))
        return
    ray.init(num_cpus=PARALLEL, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        timed_cv("ray", "warm-ray-" + str(os.getpid()))   # workers start and import conveyor once
        # the floor again, in turns with cv.tune on Ray: Ray's own processes share the machine with both
        ray_floors, ray_walls = [], []
        for r in range(ROUNDS):
            ray_floors.append(timed_floor(f"bare-with-ray-{r}"))
            ray_walls.append(timed_cv("ray", f"conveyor-ray-{r}"))
        floor_ray, wall_ray = statistics.median(ray_floors), statistics.median(ray_walls)
        out["floor_optuna_with_ray_up_s_by_round"] = [round(x, 3) for x in ray_floors]
        out["conveyor_ray_s"] = round(wall_ray, 3)
        out["conveyor_ray_s_by_round"] = [round(x, 3) for x in ray_walls]
        out["conveyor_ray_overhead_ms_per_trial"] = round(1000 * (wall_ray - floor_ray) / TRIALS, 2)
        out["conveyor_ray_overhead_ms_per_trial_by_round"] = [round(1000 * (w - f) / TRIALS, 2)
                                                              for f, w in zip(ray_floors, ray_walls)]
        print(json.dumps(out), file=sys.stderr, flush=True)
        if os.environ.get("BENCH_SKIP_RAY_TUNE"):
            out["ray_tune"] = "skipped: BENCH_SKIP_RAY_TUNE is set"
        else:
            out.update(_ray_tune(storage, floor, wall, wall_ray))
        out["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        ray.shutdown()
    print(json.dumps(out, indent=2))


def _ray_tune(storage: Any, floor: float, wall_threads: float, wall_ray: float) -> dict[str, Any]:
    try:
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as exc:
        return {"ray_tune": f"skipped: {exc}"}
    import optuna

    space = {"x": optuna.distributions.FloatDistribution(-3.0, 3.0), "n": optuna.distributions.IntDistribution(1, 10)}
    search = OptunaSearch(space, metric="score", mode="max", sampler=optuna.samplers.RandomSampler(seed=0),
                          study_name="ray-tune", storage=storage)
    tuner = tune.Tuner(
        ray_tune_trainable,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=TRIALS, max_concurrent_trials=PARALLEL),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="cv-bench-raytune-"), verbose=0))
    t = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t
    assert len(results) == TRIALS, len(results)
    return {"ray_tune_s": round(wall, 3),
            "ray_tune_overhead_ms_per_trial": round(1000 * (wall - floor) / TRIALS, 2),
            "conveyor_threads_vs_ray_tune": round(wall_threads / wall, 3),
            "conveyor_ray_vs_ray_tune": round(wall_ray / wall, 3)}


if __name__ == "__main__":
    sys.exit(main())
