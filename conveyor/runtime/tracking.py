"""Tracking calls: ``cv.log_metric``, ``cv.log_params``, ``cv.log_artifact`` and ``cv.start_run``.

Inside a step they attach to the step run; inside ``with cv.start_run(...)`` to that run.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.runtime.context import _metric_name, _metric_value, current_step

_target_override: contextvars.ContextVar[Any] = contextvars.ContextVar("cv_tracking_target", default=None)
_active: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar("cv_tracking_run", default=None)


class ActiveRun:
    """A tracking run for notebooks and scripts; metrics and params are written as they are logged."""

    def __init__(self, name: str, *, tags: dict[str, str] | None = None, client: Any = None) -> None:
        from conveyor.runtime.client import Client

        self.client = client or Client()
        self.name = name
        self.tags = tags or {}
        self.id = ""
        self._token: contextvars.Token[ActiveRun | None] | None = None

    def __enter__(self) -> ActiveRun:
        from conveyor.runtime.environment import git_state, python_environment

        md = self.client.metadata
        env_hash = md.runs.save_environment(python_environment())
        commit, dirty = git_state(os.getcwd())
        self.id = md.runs.create(kind="tracking", name=self.name, tags=self.tags, environment_hash=env_hash,
                                 git_commit=commit, git_dirty=dirty, pid=os.getpid(), host=socket.gethostname())
        self._token = _active.set(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._token is not None:
            _active.reset(self._token)
        md = self.client.metadata
        if exc is None:
            md.runs.set_status(self.id, "succeeded")
        elif isinstance(exc, KeyboardInterrupt):
            md.runs.set_status(self.id, "cancelled", error="interrupted")
        else:
            md.runs.set_status(self.id, "failed", error="".join(traceback.format_exception(exc))[-4000:])

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self.client.metadata.tracking.log_metrics(self.id, [(_metric_name(name), _metric_value(name, value), step)])

    def log_params(self, values: dict[str, Any]) -> None:
        from conveyor.runtime.slots import json_param

        self.client.metadata.tracking.log_params(self.id, {k: json_param(v) for k, v in values.items()})

    def log_artifact(self, path: str | os.PathLike[str]) -> str:
        from conveyor.store.metadata import NewArtifact, StepOutcome

        p = _existing(path)
        stored = self.client.artifacts.put_file(p)
        art = NewArtifact(name=f"logged/{p.name}", content_hash=stored.content_hash, materializer=stored.materializer,
                          materializer_version=stored.materializer_version, type_name=stored.type_name,
                          size=stored.size, uri=stored.uri, inline=stored.inline, meta=stored.meta)
        self.client.metadata.steps.record(self.id, "tracking", "tracking",
                                          StepOutcome(status="succeeded", new_outputs=[art]))
        return art.id


def start_run(name: str, *, tags: dict[str, str] | None = None, client: Any = None) -> ActiveRun:
    """Open a tracking run: ``with cv.start_run("exp") as run: cv.log_metric("auc", 0.9)``."""
    return ActiveRun(name, tags=tags, client=client)


def active_run() -> ActiveRun | None:
    """The ``cv.start_run`` block this code runs in, if any."""
    return _active.get()


@contextlib.contextmanager
def tracking_target(target: Any) -> Iterator[None]:
    """Send ``cv.log_metric`` / ``cv.log_params`` to ``target`` (e.g. a tuning trial) inside the block."""
    token = _target_override.set(target)
    try:
        yield
    finally:
        _target_override.reset(token)


def _target() -> Any:
    override = _target_override.get()
    if override is not None:
        return override
    step = current_step()
    if step is not None:
        return step
    run = _active.get()
    if run is not None:
        return run
    raise ConveyorError("Nothing to log to: call this inside a running step or inside "
                        "`with cv.start_run('name'):`.")


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise ConveyorError(f"cv.log_artifact: {p} does not exist. Write the file first, then log it.")
    return p


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric value; ``step`` orders the points of a curve (epoch, iteration)."""
    _target().log_metric(name, value, step)


def log_metrics(values: dict[str, float], step: int | None = None) -> None:
    """Record several metrics at once."""
    target = _target()
    for k, v in values.items():
        target.log_metric(k, v, step)


def log_params(values: dict[str, Any]) -> None:
    """Record parameters (hyper-parameters, settings) of the current step or run."""
    _target().log_params(values)


def log_artifact(path: str | os.PathLike[str]) -> None:
    """Store a file or a folder with the current step or run."""
    target = _target()
    p = _existing(path)
    if hasattr(target, "logged_files"):
        target.logged_files.append((p.name, str(p)))
    else:
        target.log_artifact(p)
