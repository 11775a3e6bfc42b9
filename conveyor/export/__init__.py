"""Export: one pipeline, compiled for each cloud's own orchestrator (``conveyor export``)."""

from conveyor.export.base import (
           TARGETS,
           ExportOptions,
           ExportResult,
           Target,
           export,
           target,
)
from conveyor.export.plan import Emit, FanOut, Gate, ParamSpec, Plan, Task, lower

__all__ = ["TARGETS", "Emit", "ExportOptions", "ExportResult", "FanOut", "Gate", "ParamSpec", "Plan", "Target",
           "Task", "export", "lower", "target"]
