"""The step context: what a running step knows about itself, and what it logs."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError


@dataclass(slots=True)
class StepContext:
    """Handed to the code of a running step (``cv.get_step_context()``)."""

    run_id: str
    step_name: str
    node_name: str
    step_run_id: str
    attempt: int = 1
    map_index: int | None = None
    artifact_root: str = ""
    metadata_url: str = ""
    actor: str = "unknown"
    inline_max_bytes: int = 65536
    metrics: list[tuple[str, float, int | None, float]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    logged_files: list[tuple[str, str]] = field(default_factory=list)   # (name, path)
    # streams and queues read in this attempt: acknowledged once its outputs are stored, given back otherwise
    acknowledging: list[Any] = field(default_factory=list)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self.metrics.append((_metric_name(name), _metric_value(name, value), step, time.time()))

    def log_params(self, values: dict[str, Any]) -> None:
        self.params.update(values)

    def acknowledge_on_success(self, source: Any) -> None:
        """Have ``source.ack()`` called when this attempt succeeds (outputs stored), ``nack()`` otherwise."""
        if not any(held is source for held in self.acknowledging):
            self.acknowledging.append(source)


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("cv_step", default=None)


def current_step() -> StepContext | None:
    """The running step's context, or None outside a step."""
    return _current.get()


def set_current_step(ctx: StepContext | None) -> contextvars.Token[StepContext | None]:
    return _current.set(ctx)


def get_step_context() -> StepContext:
    """The running step's context; an error outside a step."""
    ctx = _current.get()
    if ctx is None:
        raise ConveyorError("cv.get_step_context() was called outside a running step. "
                            "Call it from inside a function decorated with @cv.step while a pipeline runs.")
    return ctx


def _metric_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 250:
        raise ConveyorError(f"Metric name {name!r} must be a non-empty string of at most 250 characters.")
    return name


def _metric_value(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConveyorError(f"Metric '{name}' must be a number, got {type(value).__name__} {value!r}.") from None
