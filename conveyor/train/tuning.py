"""``cv.tune``: a hyper-parameter search whose study lives in the metadata database.

The process that calls ``cv.tune`` coordinates: it asks the sampler for each trial's
parameters, hands the trial to a dispatcher (threads, processes or Ray tasks), tells the study
the outcome and writes the trial's child run. Workers only evaluate the objective, reaching the
study's database for pruning decisions.

Resuming: calling ``cv.tune`` again with the same ``study_name`` (inside a step the name is the
run's id and the step's node, so ``conveyor runs resume`` does it) loads the study, keeps every
finished trial, and runs only what is missing to reach ``n_trials``. Trials that a killed
process left RUNNING are marked FAIL (system attribute ``conveyor:interrupted``), their child
runs failed, and their parameters queued again, so they are evaluated exactly once more.
Trials RUNNING under a process that is still alive, or on another host, are left alone. The
sampler (with its random state) is saved in the study after each ask and restored on resume, so
a seeded search continues its sequence instead of repeating it.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConfigurationError, Conflict
from conveyor.store.metadata.base import new_id
from conveyor.train.dispatch import dispatcher
from conveyor.train.studies import directions_of, pruner_of, recover_interrupted, register_session, sampler_of
from conveyor.train.trial import TrialOutcome, TrialTask, evaluate

_RUN_STATUS = {"complete": "succeeded", "pruned": "cancelled", "failed": "failed"}


@dataclass(frozen=True, slots=True)
class TrialSummary:
    """One finished trial: its number, state, objective values, parameters and child run."""

    number: int
    state: str
    values: tuple[float, ...] | None
    params: dict[str, Any]
    run_id: str | None


@dataclass(slots=True)
class TuneResult:
    """What a search found: the best parameters and model, or the Pareto front of several objectives."""

    study_name: str
    directions: tuple[str, ...]
    best_params: dict[str, Any]
    best_values: tuple[float, ...]
    best_trial: int
    best_run_id: str | None
    best_model: Any = None
    best_model_artifact_id: str | None = None
    pareto_front: list[TrialSummary] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)   # complete / pruned / failed trials of the study

    @property
    def best_value(self) -> float:
        """The objective value of the best trial (the first objective's, for several)."""
        return self.best_values[0]


@dataclass(slots=True)
class _Loop:
    """What the lanes of one study share."""

    remaining: int
    stop: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    inflight: dict[int, tuple[Any, Future[str]]] = field(default_factory=dict)   # number -> trial, its run's id
    snapshot_at: float = 0.0
    host: str = field(default_factory=socket.gethostname)


@dataclass(slots=True)
class _Context:
    client: Any
    parent_run_id: str
    step_run_id: str | None
    own_parent: bool
    step: Any


def tune(objective: Callable[..., Any], space: Mapping[str, Any] | None = None, *, n_trials: int,
         parallelism: int = 1, direction: str | Sequence[str] = "maximize", sampler: Any = None,
         pruner: Any = None, study_name: str | None = None, executor: str | None = None,
         args: Sequence[Any] = (), metric_names: Sequence[str] | None = None, seed: int | None = None,
         client: Any = None, progress: bool = True) -> TuneResult:
    """Search ``space`` for the parameters that optimise ``objective(trial, *args)``.

    ``space`` maps names to ranges (see :mod:`conveyor.train.space`); the objective reads
    ``trial.params``, may ``trial.report(value, step)`` and ``trial.should_prune()``, offers its
    model with ``trial.set_model(model)``, and returns one number per ``direction``
    (``"maximize"``/``"minimize"``, or a list of them for a multi-objective study). ``sampler``
    and ``pruner`` take Optuna objects or names (``"tpe"``, ``"random"``, ``"nsga2"``,
    ``"cmaes"``; ``"median"``, ``"hyperband"``, ``"halving"``, ``"none"``). ``n_trials``
    counts the study's finished trials, so calling again with the same ``study_name`` resumes.
    ``executor`` is ``thread``, ``process`` or ``ray`` (default: the configured executor).
    Each trial is a child run of the calling step or ``cv.start_run`` block (or of a run made for
    the study); the result names the winning trial's run and holds its model.
    """
    import optuna

    from conveyor.train.space import distributions

    _check(objective, n_trials, parallelism)
    dirs = directions_of(direction)
    names = _metric_names(metric_names, dirs)
    dists = distributions(space or {})
    ctx = _context(client, study_name)
    settings = ctx.client.settings
    name = study_name or (f"{ctx.parent_run_id}.{ctx.step.node_name}" if ctx.step is not None
                          else f"study-{new_id()}")
    md = ctx.client.metadata
    url = md.url
    from conveyor.train.storage import study_storage

    storage = study_storage(url)
    chosen_sampler = sampler_of(sampler, seed, len(dirs))
    study = optuna.create_study(study_name=name, storage=storage, directions=list(dirs), sampler=chosen_sampler,
                                pruner=pruner_of(pruner), load_if_exists=True)
    stored_dirs = tuple(d.name.lower() for d in study.directions)
    if stored_dirs != dirs:
        raise Conflict(f"Study '{name}' exists with directions {list(stored_dirs)}, not {list(dirs)}. "
                       "Use another study_name, or the same directions to resume it.")
    study.sampler = _restored_sampler(md.trials.latest_sampler(name), chosen_sampler)
    if ctx.own_parent:   # only now that the settings are accepted: a refused call leaves no run behind
        ctx.parent_run_id = _own_parent(md, name)
    if recover_interrupted(study, md) and hasattr(study.sampler, "reseed_rng"):
        # a killed session may have drawn after its last snapshot: a fresh seed cannot draw those again
        study.sampler.reseed_rng()
    register_session(study)
    done = _finished(study)
    remaining = max(0, n_trials - done)

    pool = dispatcher(executor or settings.executor, parallelism, ray_address=settings.ray_address)
    best = _Best(dirs, study)
    bar = _progress(progress, name, n_trials, done)
    loop = _Loop(remaining)

    def session() -> None:
        """One of ``parallelism`` lanes: ask, open the trial's run, evaluate, tell, close; until none is left.

        Each lane does its own bookkeeping (as Optuna's ``n_jobs`` threads do), so one lane's
        database writes overlap the other lanes' objectives instead of queueing behind them.
        """
        while True:
            with loop.lock:
                if loop.stop or loop.remaining <= 0:
                    return
                loop.remaining -= 1
            # not under the lock: asks of several lanes overlap, as in Optuna's own n_jobs (the
            # snapshot of the sampler is taken right after this lane's draws)
            trial = study.ask(fixed_distributions=dists)
            with loop.lock:   # snapshots in the order taken, so the last one holds every draw before it
                sampler_state = _pickled_sampler(study)
                loop.snapshot_at = max(time.time(), loop.snapshot_at + 1e-6)
                sampler_at = loop.snapshot_at
            opened = trial_writes.open(study=name, number=trial.number, parent_run_id=ctx.parent_run_id,
                                       parent_step_run_id=ctx.step_run_id, parameters=dict(trial.params),
                                       pid=os.getpid(), host=loop.host, sampler=sampler_state,
                                       sampler_at=sampler_at)   # written while the objective runs
            loop.inflight[trial.number] = (trial, opened)
            task = TrialTask(storage_url=url, study_name=name, trial_id=trial._trial_id, objective=objective,
                             args=tuple(args), sampler=study.sampler, pruner=study.pruner,
                             study=study if pool is None else None, trial=trial if pool is None else None,
                             frozen=trial._cached_frozen_trial if pool is not None else None)
            outcome = evaluate(task) if pool is None else _outcome(pool.submit(task), trial)
            if loop.stop:
                return   # interrupted meanwhile: the trial was queued again, its result is not told
            run_id = opened.result()   # a trial the study counts as finished always has its run
            _tell(study, trial, outcome)
            with loop.lock:
                keep = best.keep(outcome)
            _record(ctx.client, trial_writes, run_id, outcome, names, keep)
            loop.inflight.pop(trial.number, None)
            if bar is not None:
                bar[0].advance(bar[1])

    from conveyor.train.writes import TrialWriter

    trial_writes = TrialWriter(_trial_engine(md, storage))
    lanes = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="conveyor-study")
    try:
        futures = [lanes.submit(session) for _ in range(parallelism)]
        for fut in futures:
            fut.result()
    except BaseException:
        loop.stop = True
        if pool is not None:
            pool.shutdown(cancel=True)
        trial_writes.stop(raise_failed=False)
        for trial, opened in list(loop.inflight.values()):
            _interrupt(study, trial, opened.result() if opened.done() and not opened.exception() else None, md)
        if ctx.own_parent:
            md.runs.set_status(ctx.parent_run_id, "cancelled", error="the study was interrupted")
        raise
    finally:
        lanes.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar[0].stop()
    if pool is not None:
        pool.shutdown()
    trial_writes.stop()   # every trial's run written (or the first write that failed raised)
    result = _result(study, ctx, dirs, best)
    _report(ctx, result, names)
    return result


def _check(objective: Any, n_trials: Any, parallelism: Any) -> None:
    if not callable(objective):
        raise ConfigurationError(f"cv.tune: objective must be a function of the trial, got {objective!r}.")
    for label, value in (("n_trials", n_trials), ("parallelism", parallelism)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"cv.tune: {label} must be a whole number of at least 1, got {value!r}.")


def _metric_names(given: Sequence[str] | None, dirs: tuple[str, ...]) -> tuple[str, ...]:
    if given is None:
        return ("objective",) if len(dirs) == 1 else tuple(f"objective_{i}" for i in range(len(dirs)))
    names = tuple(given)
    if len(names) != len(dirs):
        raise ConfigurationError(f"cv.tune: metric_names has {len(names)} names for {len(dirs)} directions; "
                                 "give one name per direction.")
    return names


def _context(client: Any, study_name: str | None) -> _Context:
    from conveyor.runtime.client import Client
    from conveyor.runtime.context import current_step
    from conveyor.runtime.tracking import active_run

    step = current_step()
    if client is None:
        if step is not None and step.metadata_url:
            from conveyor.config import load_settings
            from conveyor.runtime.worker import artifact_store
            from conveyor.store.metadata import MetadataStore

            settings = load_settings()
            client = Client(settings, metadata=MetadataStore(step.metadata_url),
                            artifacts=artifact_store(step.artifact_root or settings.artifact_root,
                                                     settings.inline_max_bytes))
        else:
            run = active_run()
            client = run.client if run is not None else Client()
    if step is not None:
        return _Context(client, step.run_id, step.step_run_id, False, step)
    run = active_run()
    if run is not None:
        return _Context(client, run.id, None, False, None)
    return _Context(client, "", None, True, None)


def _own_parent(md: Any, name: str) -> str:
    """The run a study called outside any step or tracking run hangs its trials under."""
    from conveyor.runtime.environment import python_environment

    return str(md.runs.create(kind="tuning", name=name[:200], environment_hash=md.runs.save_environment(
        python_environment()), pid=os.getpid(), host=socket.gethostname(), tags={"study": name}))


def _restored_sampler(saved: str | None, given: Any) -> Any:
    """The sampler saved by an earlier session of this study, when it is of the kind asked for."""
    import cloudpickle

    if not saved:
        return given
    try:
        sampler = cloudpickle.loads(base64.b64decode(saved))
    except Exception:   # noqa: BLE001 - a sampler saved by other code versions: start from the given one
        return given
    return sampler if type(sampler) is type(given) else given


def _pickled_sampler(study: Any) -> str:
    import cloudpickle

    return base64.b64encode(cloudpickle.dumps(study.sampler)).decode()


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return sum(1 for t in trials if not t.system_attrs.get("conveyor:interrupted"))


def _outcome(fut: Future[TrialOutcome], trial: Any) -> TrialOutcome:
    try:
        return fut.result()
    except Exception as exc:   # noqa: BLE001 - the worker died or could not run it: a failed trial
        now = time.time()
        return TrialOutcome(trial_id=trial._trial_id, number=trial.number, state="failed",
                            error=f"the worker running this trial stopped: {type(exc).__name__}: {exc}",
                            started_at=now, ended_at=now)


def _tell(study: Any, trial: Any, outcome: TrialOutcome) -> None:
    from optuna.trial import TrialState

    if outcome.state == "complete" and outcome.values is not None and len(outcome.values) != len(study.directions):
        outcome.state = "failed"
        outcome.error = (f"The objective returned {len(outcome.values)} values for {len(study.directions)} "
                         "directions; return one value per direction.")
    if outcome.state == "complete":
        study.tell(trial, outcome.values)
    elif outcome.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def _trial_engine(md: Any, storage: Any) -> Any:
    """Where trial runs are written: on SQLite through the study's own connection, so that this
    process's writes queue in Python behind each other instead of polling SQLite's file lock."""
    return storage.engine if md.url.startswith("sqlite") else md.trials.engine


def _record(client: Any, trial_writes: Any, run_id: str, outcome: TrialOutcome, names: tuple[str, ...],
            keep_model: bool) -> None:
    """The trial's child run: one step run ``trial`` with its values, curve, params and kept model."""
    from conveyor.store.metadata import NewArtifact, StepOutcome

    md = client.metadata
    at = outcome.ended_at
    metrics: list[tuple[str, float, int | None, float]] = [(n, v, None, at) for n, v in
                                                            zip(names, outcome.values or ())]
    metrics += [("intermediate", v, s, at) for s, v in outcome.intermediate]
    metrics += [(k, v, s, at) for k, v, s in outcome.metrics]
    outputs = []
    if keep_model and outcome.has_model and outcome.state == "complete":
        stored = client.artifacts.put(outcome.model)
        outputs.append(NewArtifact(name="model", content_hash=stored.content_hash, materializer=stored.materializer,
                                   materializer_version=stored.materializer_version, type_name=stored.type_name,
                                   size=stored.size, uri=stored.uri, inline=stored.inline, meta=stored.meta))
    status = _RUN_STATUS[outcome.state]
    error = outcome.error or ("pruned" + (f" at step {outcome.intermediate[-1][0]}" if outcome.intermediate else "")
                              if outcome.state == "pruned" else None)
    trial_writes.close(run_id, StepOutcome(
        status="succeeded" if status == "succeeded" else "failed", error=outcome.error, metrics=metrics,
        new_outputs=outputs, started_at=outcome.started_at, ended_at=outcome.ended_at,
        reason="pruned" if outcome.state == "pruned" else None), status=status, error=error,
        event="pruned" if outcome.state == "pruned" else None)


def _interrupt(study: Any, trial: Any, run_id: str | None, md: Any) -> None:
    """A trial stopped by Ctrl-C: failed, marked, and queued again for the next session (and its run
    cancelled, when it was written)."""
    from conveyor.train.studies import requeue

    requeue(study, trial._trial_id, dict(trial.params))
    if run_id is not None:
        md.runs.set_status(run_id, "cancelled", error="interrupted; queued again for the study's next session")


class _Best:
    """Tracks which trial's model to keep: the best so far, or those on the Pareto front so far."""

    def __init__(self, dirs: tuple[str, ...], study: Any) -> None:
        from optuna.trial import TrialState

        self.signs = [1.0 if d == "maximize" else -1.0 for d in dirs]
        self.points = [tuple(t.values) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        self.models: dict[int, Any] = {}

    def _dominates(self, a: Sequence[float], b: Sequence[float]) -> bool:
        pa = [s * v for s, v in zip(self.signs, a)]
        pb = [s * v for s, v in zip(self.signs, b)]
        return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))

    def keep(self, outcome: TrialOutcome) -> bool:
        if outcome.state != "complete" or outcome.values is None or len(outcome.values) != len(self.signs):
            return False
        point = tuple(outcome.values)
        if len(self.signs) == 1:
            better = not self.points or all(self.signs[0] * point[0] > self.signs[0] * p[0] for p in self.points)
        else:
            better = not any(self._dominates(p, point) for p in self.points)
        self.points.append(point)
        if better and outcome.has_model:
            if len(self.signs) == 1:
                self.models.clear()   # only the winner's object is held in memory
            self.models[outcome.number] = outcome.model
        return better


def _summary(t: Any, runs: dict[int, tuple[str, int | None, str | None]]) -> TrialSummary:
    return TrialSummary(number=t.number, state=t.state.name.lower(),
                        values=tuple(t.values) if t.values is not None else None, params=dict(t.params),
                        run_id=runs[t.number][0] if t.number in runs else None)


def _model_artifact(md: Any, run_id: str | None) -> str | None:
    if not run_id:
        return None
    steps = md.steps.for_run(run_id)
    outputs = md.steps.outputs([s.id for s in steps])
    for step_outputs in outputs.values():
        if "model" in step_outputs:
            return str(step_outputs["model"].id)
    return None


def _result(study: Any, ctx: _Context, dirs: tuple[str, ...], best: _Best) -> TuneResult:
    from optuna.trial import TrialState

    from conveyor.runtime.slots import stored_from_record

    md = ctx.client.metadata
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(1 for t in trials if t.state == getattr(TrialState, s.upper())) for s in
              ("complete", "pruned", "fail")}
    counts["failed"] = counts.pop("fail")
    if counts["complete"] == 0:
        raise Conflict(f"Study '{study.study_name}' has no completed trial ({counts['pruned']} pruned, "
                       f"{counts['failed']} failed); see the trials' runs with `conveyor studies show "
                       f"{study.study_name}` and fix the objective.")
    chosen = [study.best_trial] if len(dirs) == 1 else list(study.best_trials)
    runs = md.trials.find(study.study_name, [t.number for t in chosen])
    front = [_summary(t, runs) for t in chosen] if len(dirs) > 1 else []
    winner = _summary(chosen[0], runs)
    artifact_id = _model_artifact(md, winner.run_id)
    model = best.models.get(winner.number)
    if model is None and artifact_id is not None:
        model = ctx.client.artifacts.get(stored_from_record(md.artifacts.get(artifact_id)))
    if artifact_id is not None and ctx.step_run_id is not None:
        md.steps.add_inputs(ctx.step_run_id, ctx.parent_run_id, [("winning_trial.model", artifact_id)])
    return TuneResult(study_name=study.study_name, directions=dirs, best_params=winner.params,
                      best_values=winner.values or (), best_trial=winner.number, best_run_id=winner.run_id,
                      best_model=model, best_model_artifact_id=artifact_id, pareto_front=front, counts=counts)


def _report(ctx: _Context, result: TuneResult, names: tuple[str, ...]) -> None:
    """The best values on the calling step or run, so they show beside the other metrics."""
    metrics = {f"best_{n}": v for n, v in zip(names, result.best_values)}
    if ctx.step is not None:
        for k, v in metrics.items():
            ctx.step.log_metric(k, v)
        ctx.step.log_params({"study": result.study_name, "best_trial": result.best_trial})
        return
    md = ctx.client.metadata
    md.tracking.log_metrics(ctx.parent_run_id, [(k, v, None) for k, v in metrics.items()])
    md.tracking.log_params(ctx.parent_run_id, {"study": result.study_name, "best_trial": result.best_trial,
                                               **{f"best.{k}": v for k, v in result.best_params.items()}})
    if ctx.own_parent:
        md.runs.set_status(ctx.parent_run_id, "succeeded")


def _progress(enabled: bool, name: str, total: int, done: int) -> tuple[Any, Any] | None:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    bar = Progress(console=console, transient=True)
    task = bar.add_task(f"study {name}", total=total, completed=done)
    bar.start()
    return bar, task
