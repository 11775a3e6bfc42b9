"""``cv.train.tuning_step``: a search as a pipeline step with outputs ``best_params``, ``best_model``, ``study``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.dsl.step import Step, normalised_source_hash, step

TUNING_OUTPUTS = ("best_params", "best_model", "study")


def tuning_step(objective: Callable[..., Any], *, space: Mapping[str, Any] | None = None, n_trials: int,
                parallelism: int = 1, direction: str | Sequence[str] = "maximize", sampler: Any = None,
                pruner: Any = None, executor: str | None = None, seed: int | None = None,
                metric_names: Sequence[str] | None = None, name: str = "tune", **step_options: Any) -> Step:
    """A step that runs ``cv.tune`` and returns ``best_params``, ``best_model`` and a ``study`` summary.

    Call it in a pipeline with the data the objective needs: ``params, model, study = search(data=df)``;
    the objective is then called as ``objective(trial, data)``. ``study`` holds the study's name,
    the winning trial, its run, the counts and, for several directions, the Pareto front. The
    step's cache key covers the objective's code and the search settings; its study is named by
    the run and the node, so resuming the run resumes the study. ``step_options`` go to ``@cv.step``.
    """
    from conveyor.train.space import distributions
    from conveyor.train.studies import directions_of

    directions_of(direction)          # refuse a bad setting when the pipeline is defined, not when it runs
    dists = distributions(space or {})
    fingerprint = hashlib.sha256(repr((normalised_source_hash(objective), sorted((k, repr(v)) for k, v in dists.items()),
                                       n_trials, direction, _described(sampler), _described(pruner), seed)).encode()).hexdigest()

    def run_search(data: Any = None) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        from conveyor.train.tuning import tune

        result = tune(objective, space, n_trials=n_trials, parallelism=parallelism, direction=direction,
                      sampler=sampler, pruner=pruner, executor=executor, seed=seed, metric_names=metric_names,
                      args=() if data is None else (data,), progress=False)
        summary = {"name": result.study_name, "best_trial": result.best_trial, "best_run_id": result.best_run_id,
                   "best_values": list(result.best_values), "counts": result.counts,
                   "pareto_front": [{"number": t.number, "values": list(t.values or ()), "params": t.params,
                                     "run_id": t.run_id} for t in result.pareto_front]}
        return result.best_params, result.best_model, summary

    run_search.__qualname__ = run_search.__name__ = name
    options = {"cache_version": fingerprint[:16], **step_options}
    return step(name=name, outputs=TUNING_OUTPUTS, **options)(run_search)   # type: ignore[no-any-return]


def _described(obj: Any) -> str:
    """A stable text of a sampler or pruner (its class and simple settings; reprs hold addresses)."""
    if obj is None or isinstance(obj, str):
        return repr(obj)
    simple = {k: v for k, v in sorted(vars(obj).items()) if isinstance(v, int | float | str | bool | type(None))}
    return f"{type(obj).__qualname__}{simple}"
