"""One trial, where it runs: the objective's view of it (``Trial``) and what it hands back.

``evaluate`` is the whole of a trial on a worker (a thread, a process or a Ray task): it opens the
trial in the study, calls the objective, and returns a :class:`TrialOutcome`. Everything else
(asking the sampler, telling the result, the child run's records) happens in the process that
runs ``cv.tune``, so a worker needs only the study's database for pruning decisions.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError

_studies: dict[tuple[str, str], Any] = {}   # (storage url, study name) -> study, per worker process


class Trial:
    """The objective's handle on one trial: sampled ``params``, ``report`` / ``should_prune``, a model.

    Define-by-run suggestions (``trial.suggest_float(...)``) and the rest of Optuna's trial API
    pass through to the underlying ``optuna.trial.Trial``.
    """

    def __init__(self, optuna_trial: Any) -> None:
        self._trial = optuna_trial
        self.intermediate: list[tuple[int, float]] = []
        self.metrics: list[tuple[str, float, int | None]] = []
        self.model: Any = None
        self.has_model = False

    @property
    def number(self) -> int:
        """The trial's number in its study (0, 1, …)."""
        return int(self._trial.number)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters sampled for this trial, by name."""
        return dict(self._trial.params)

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value (an epoch's or a fold's score) that pruners compare at ``step``."""
        self._trial.report(float(value), int(step))
        self.intermediate.append((int(step), float(value)))

    def should_prune(self) -> bool:
        """True when the study's pruner judges this trial hopeless; then ``raise cv.train.TrialPruned()``."""
        return bool(self._trial.should_prune())

    def set_model(self, model: Any) -> None:
        """Offer the model this trial trained; the winning trial's model becomes the tuning's output."""
        self.model = model
        self.has_model = True

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """A metric of this trial's run (what ``cv.log_metric`` does inside the objective)."""
        self.metrics.append((name, float(value), step))

    def log_params(self, values: dict[str, Any]) -> None:
        """Extra values are kept as user attributes of the trial (the sampled params are recorded anyway)."""
        for k, v in values.items():
            self._trial.set_user_attr(k, v)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


@dataclass(slots=True)
class TrialTask:
    """What a worker needs to run one trial."""

    storage_url: str
    study_name: str
    trial_id: int
    objective: Callable[..., Any]
    args: tuple[Any, ...] = ()
    sampler: Any = None
    pruner: Any = None
    study: Any = None   # the live study, when the worker shares the coordinator's memory (threads)
    trial: Any = None   # the asked optuna trial itself, then too
    frozen: Any = None  # else the asked trial's FrozenTrial as the coordinator holds it (Ray tasks)


@dataclass(slots=True)
class TrialOutcome:
    """What a trial hands back to the coordinator."""

    trial_id: int
    number: int
    state: str                                    # complete | pruned | failed
    values: list[float] | None = None
    intermediate: list[tuple[int, float]] = field(default_factory=list)
    metrics: list[tuple[str, float, int | None]] = field(default_factory=list)
    model: Any = None
    has_model: bool = False
    error: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0


def _study(task: TrialTask) -> Any:
    if task.study is not None:
        return task.study
    key = (task.storage_url, task.study_name)
    study = _studies.get(key)
    if study is None:
        import optuna

        from conveyor.train.storage import study_storage

        study = optuna.load_study(study_name=task.study_name, storage=study_storage(task.storage_url),
                                  sampler=task.sampler, pruner=task.pruner)
        _studies[key] = study
    return study


def evaluate(task: TrialTask) -> TrialOutcome:
    """Run the objective for one trial; never raises (a failure is an outcome)."""
    import optuna

    from conveyor.runtime.tracking import tracking_target

    started = time.time()
    study = _study(task)
    trial = Trial(task.trial if task.trial is not None else _worker_trial(study, task.trial_id, task.frozen))
    outcome = TrialOutcome(trial_id=task.trial_id, number=trial.number, state="failed", started_at=started)
    try:
        with tracking_target(trial):
            result = task.objective(trial, *task.args)
        outcome.values = _values(result)
        outcome.state = "complete"
    except optuna.TrialPruned:
        outcome.state = "pruned"
    except Exception as exc:   # noqa: BLE001 - a failing trial is recorded, the study goes on
        outcome.error = "".join(traceback.format_exception(exc))[-4000:]
    outcome.intermediate = trial.intermediate
    outcome.metrics = trial.metrics
    outcome.model, outcome.has_model = trial.model, trial.has_model
    outcome.ended_at = time.time()
    return outcome


def evaluate_pickled(blob: bytes) -> TrialOutcome:
    """``evaluate`` for a task cloud-pickled by the coordinator (process workers)."""
    import cloudpickle

    return evaluate(cloudpickle.loads(blob))


_shipped: dict[str, tuple[Any, ...]] = {}   # a study's shared part, by the dispatcher's key, per worker process
_SHIPPED_KEEP = 8


# what an optuna Trial holds once made (Optuna 4 and 5); a worker checks it on its first trial
_TRIAL_FIELDS = frozenset({"study", "_trial_id", "storage", "_cached_frozen_trial", "relative_search_space",
                           "_relative_params", "_fixed_params"})
_made_from_frozen: bool | None = None   # None: not checked yet in this process


def _worker_trial(study: Any, trial_id: int, frozen: Any) -> Any:
    """The optuna Trial of ``trial_id`` on a worker, from the coordinator's FrozenTrial when it came along.

    ``optuna.trial.Trial(study, trial_id)`` reads the trial back from the database (about 1 ms on
    SQLite) only to learn what the coordinator already knows: it was asked there and nothing else
    wrote it since. The first trial of a worker process is made that documented way; when the made
    trial holds exactly the fields Optuna's constructor is known to set, later ones are made from
    the FrozenTrial with the same steps (the sampler's ``before_trial`` included), and otherwise
    (another Optuna) always the documented way.
    """
    global _made_from_frozen
    import optuna

    if frozen is None or _made_from_frozen is False:
        return optuna.trial.Trial(study, trial_id)
    if _made_from_frozen is None:
        made = optuna.trial.Trial(study, trial_id)
        _made_from_frozen = set(vars(made)) == _TRIAL_FIELDS
        return made
    from optuna import pruners

    made = optuna.trial.Trial.__new__(optuna.trial.Trial)
    made.study, made._trial_id, made.storage = study, trial_id, study._storage
    made._cached_frozen_trial = frozen
    study.sampler.before_trial(pruners._filter_study(study, frozen), frozen)
    made.relative_search_space = None
    made._relative_params = None
    made._fixed_params = frozen.system_attrs.get("fixed_params", {})
    return made


def evaluate_shipped(key: str, box: list[Any], storage_url: str, study_name: str, trial_id: int,
                     frozen: Any = None) -> TrialOutcome:
    """``evaluate`` on a Ray worker: the study's shared part (objective, args, sampler, pruner) is
    unpickled from the object store once per worker and ``key``, the trial is named by its id."""
    shared = _shipped.get(key)
    if shared is None:
        import cloudpickle
        import ray

        shared = cloudpickle.loads(ray.get(box[0]))
        while len(_shipped) >= _SHIPPED_KEEP:   # the oldest studies' objectives go first
            _shipped.pop(next(iter(_shipped)))
        _shipped[key] = shared
    objective, args, sampler, pruner = shared
    return evaluate(TrialTask(storage_url=storage_url, study_name=study_name, trial_id=trial_id,
                              objective=objective, args=args, sampler=sampler, pruner=pruner, frozen=frozen))


def _values(result: Any) -> list[float]:
    items: Sequence[Any] = result if isinstance(result, list | tuple) else [result]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ConveyorError(f"The objective returned {result!r}; it must return a number "
                            "(or one number per direction of a multi-objective study).") from None
    if any(v != v for v in values):
        raise ConveyorError(f"The objective returned NaN ({result!r}); return a number, or raise to fail the trial.")
    return values
