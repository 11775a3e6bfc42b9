"""Studies in the metadata database: choosing samplers and pruners, recovering interrupted trials, listing.

Conveyor's marks on Optuna's records (system attributes):

- ``conveyor:interrupted`` on a trial that a stopped process left RUNNING (then FAIL, not counted
  towards ``n_trials``), and ``conveyor:retry_of`` on the queued trial that evaluates it again;
- ``conveyor:session:<host>:<pid>`` on the study: a process that worked on it, and since when.

Which process runs a trial is the trial's child run (``pid``, ``host``, see
``store/metadata/trials.py``), and so is the sampler saved after each ask.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError, NotFound

INTERRUPTED_ATTR = "conveyor:interrupted"
RETRY_ATTR = "conveyor:retry_of"
SESSION_PREFIX = "conveyor:session:"

_SAMPLERS = ("tpe", "random", "cmaes", "nsga2", "qmc")
_PRUNERS = ("median", "hyperband", "halving", "percentile", "none")


def directions_of(direction: str | Sequence[str]) -> tuple[str, ...]:
    """``"maximize"`` or a list of directions, checked."""
    dirs = (direction,) if isinstance(direction, str) else tuple(direction)
    if not dirs:
        raise ConfigurationError("cv.tune: direction is empty; give 'maximize', 'minimize' or a list of them.")
    for d in dirs:
        if d not in ("maximize", "minimize"):
            raise ConfigurationError(f"cv.tune: direction {d!r} is not 'maximize' or 'minimize'.")
    return dirs


def sampler_of(sampler: Any, seed: int | None, n_objectives: int) -> Any:
    """An Optuna sampler from an object or a name (default: TPE, or NSGA-II for several objectives)."""
    import optuna

    if sampler is None:
        sampler = "tpe" if n_objectives == 1 else "nsga2"
    if not isinstance(sampler, str):
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise ConfigurationError(f"cv.tune: sampler {sampler!r} is not an Optuna sampler or one of "
                                     f"{', '.join(_SAMPLERS)}.")
        return sampler
    makers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
              "cmaes": optuna.samplers.CmaEsSampler, "nsga2": optuna.samplers.NSGAIISampler,
              "qmc": optuna.samplers.QMCSampler}
    if sampler not in makers:
        raise ConfigurationError(f"cv.tune: sampler {sampler!r} is not known. Use one of {', '.join(_SAMPLERS)}, "
                                 "or pass an optuna.samplers object.")
    return makers[sampler](seed=seed)


def pruner_of(pruner: Any) -> Any:
    """An Optuna pruner from an object or a name (default: none; pruning is asked for)."""
    import optuna

    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if not isinstance(pruner, str):
        if not isinstance(pruner, optuna.pruners.BasePruner):
            raise ConfigurationError(f"cv.tune: pruner {pruner!r} is not an Optuna pruner or one of "
                                     f"{', '.join(_PRUNERS)}.")
        return pruner
    makers = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
              "halving": optuna.pruners.SuccessiveHalvingPruner,
              "percentile": lambda: optuna.pruners.PercentilePruner(25.0)}
    if pruner not in makers:
        raise ConfigurationError(f"cv.tune: pruner {pruner!r} is not known. Use one of {', '.join(_PRUNERS)}, "
                                 "or pass an optuna.pruners object.")
    return makers[pruner]()


def requeue(study: Any, trial_id: int, params: dict[str, Any]) -> None:
    """Fail an unfinished trial (marked interrupted) and queue its parameters again."""
    from optuna.trial import TrialState

    storage = study._storage
    storage.set_trial_system_attr(trial_id, INTERRUPTED_ATTR, True)
    number = storage.get_trial_number_from_id(trial_id)
    if storage.set_trial_state_values(trial_id, TrialState.FAIL):
        study.enqueue_trial(params, user_attrs={RETRY_ATTR: number})


def register_session(study: Any) -> None:
    """Note in the study that this process works on it (``conveyor:session:<host>:<pid>``)."""
    import os
    import time

    study._storage.set_study_system_attr(study._study_id, f"{SESSION_PREFIX}{socket.gethostname()}:{os.getpid()}",
                                         time.time())


def _others_gone(study: Any) -> bool:
    """True when every other session recorded in the study was a process of this host that is gone."""
    import os

    from conveyor.runtime.processes import pid_alive

    host = socket.gethostname()
    for key in study._storage.get_study_system_attrs(study._study_id):
        if not key.startswith(SESSION_PREFIX):
            continue
        other_host, _, pid = key[len(SESSION_PREFIX):].rpartition(":")
        if other_host != host or not pid.isdigit():
            return False
        if int(pid) != os.getpid() and pid_alive(int(pid)):
            return False
    return True


def recover_interrupted(study: Any, md: Any) -> list[int]:
    """Requeue trials left RUNNING by a process of this host that is gone; the numbers recovered.

    A trial's process is its child run's ``pid``/``host``. A trial with no run yet (the process
    died between asking for it and opening its run) is judged by the study's sessions: it is
    recovered only when every other process that worked on the study ran here and is gone.
    """
    from optuna.trial import TrialState

    from conveyor.runtime.processes import pid_alive

    host = socket.gethostname()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    runs = md.trials.find(study.study_name, [t.number for t in running]) if running else {}
    orphans_stale: bool | None = None
    recovered = []
    for t in running:
        run_id, pid, run_host = runs.get(t.number, (None, None, None))
        if run_id is None:
            if orphans_stale is None:
                orphans_stale = _others_gone(study)
            if not orphans_stale:
                continue
        elif run_host != host or pid is None or pid_alive(pid):
            continue   # someone else's, or still running: not ours to judge
        requeue(study, t._trial_id, dict(t.params))
        if run_id is not None:
            md.runs.set_status(run_id, "failed", error="interrupted: the process running this trial stopped; "
                               "its parameters were queued again", event="interrupted")
        recovered.append(t.number)
    _close_told(study, md)
    return recovered


def _close_told(study: Any, md: Any) -> None:
    """Close the runs of trials a stopped process told the study about but did not record."""
    from optuna.trial import TrialState

    from conveyor.runtime.processes import pid_alive
    from conveyor.store.metadata import StepOutcome

    host = socket.gethostname()
    left = [(n, r) for n, r, pid, h in md.trials.unfinished(study.study_name)
            if h == host and pid is not None and not pid_alive(pid)]
    if not left:
        return
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    status = {TrialState.COMPLETE: "succeeded", TrialState.PRUNED: "cancelled", TrialState.FAIL: "failed"}
    for number, run_id in left:
        t = by_number.get(number)
        if t is None or t.state not in status:
            continue
        names = ["objective"] if len(t.values or ()) == 1 else [f"objective_{i}" for i in range(len(t.values or ()))]
        at = t.datetime_complete.timestamp() if t.datetime_complete else None
        metrics = [(n, v, None, at or 0.0) for n, v in zip(names, t.values or ())]
        metrics += [("intermediate", v, s, at or 0.0) for s, v in sorted(t.intermediate_values.items())]
        md.trials.close(run_id, StepOutcome(status="succeeded" if t.state == TrialState.COMPLETE else "failed",
                                            metrics=metrics, reason="recorded from the study after an interruption"),
                        status=status[t.state], error=None if t.state == TrialState.COMPLETE else t.state.name.lower(),
                        event="recovered")


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One study as ``conveyor studies list`` shows it."""

    name: str
    directions: tuple[str, ...]
    n_trials: int
    complete: int
    pruned: int
    failed: int
    best_value: tuple[float, ...] | None
    started_at: float | None


def list_studies(url: str) -> list[StudySummary]:
    """Every study in the metadata database at ``url``."""
    import optuna

    from conveyor.train.storage import study_storage

    out = []
    for s in optuna.get_all_study_summaries(study_storage(url), include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=study_storage(url))
        out.append(summarise(study, s.datetime_start.timestamp() if s.datetime_start else None))
    return out


def summarise(study: Any, started_at: float | None = None) -> StudySummary:
    """Counts and best value of one study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best: tuple[float, ...] | None = None
    if complete and len(study.directions) == 1:
        best = (float(study.best_value),)
    return StudySummary(name=study.study_name, directions=tuple(d.name.lower() for d in study.directions),
                        n_trials=len(trials), complete=len(complete),
                        pruned=sum(1 for t in trials if t.state == TrialState.PRUNED),
                        failed=sum(1 for t in trials if t.state == TrialState.FAIL), best_value=best,
                        started_at=started_at)


def load(url: str, name: str) -> Any:
    """A study by name; NotFound names the studies that exist."""
    import optuna

    from conveyor.train.storage import study_storage

    storage = study_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise NotFound(f"No study '{name}'. Studies: {', '.join(known[:20]) or '(none)'}; "
                       "see them with `conveyor studies list`.") from None
