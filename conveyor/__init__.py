"""Conveyor: pipelines, tracking, registry, serving and monitoring for machine-learning models.

Public names are imported on first use, so ``import conveyor`` and ``conveyor --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "step": "conveyor.dsl", "pipeline": "conveyor.dsl", "when": "conveyor.dsl", "unless": "conveyor.dsl",
    "unmapped": "conveyor.dsl", "Pipeline": "conveyor.dsl", "Step": "conveyor.dsl",
    "ConveyorError": "conveyor.errors", "ParameterError": "conveyor.errors", "QualityGateFailed": "conveyor.errors",
    "StepTimeout": "conveyor.errors", "StepPreempted": "conveyor.errors",
    "checkpoint": "conveyor.runtime.checkpoint", "restore": "conveyor.runtime.checkpoint",
    "preempted": "conveyor.runtime.checkpoint",
    "HookContext": "conveyor.runtime.hooks",
    "Client": "conveyor.runtime.client", "Run": "conveyor.runtime.run",
    "StepContext": "conveyor.runtime.context", "get_step_context": "conveyor.runtime.context",
    "ActiveRun": "conveyor.runtime.tracking", "start_run": "conveyor.runtime.tracking",
    "log_metric": "conveyor.runtime.tracking", "log_metrics": "conveyor.runtime.tracking",
    "log_params": "conveyor.runtime.tracking", "log_artifact": "conveyor.runtime.tracking",
    "register_model": "conveyor.registry.api",
    "endpoints": "conveyor.serving.endpoints",
    "data": "conveyor.data",
    "train": "conveyor.train", "tune": "conveyor.train",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from conveyor.dsl import Pipeline, Step, pipeline, step, unless, unmapped, when
    from conveyor.errors import ConveyorError, ParameterError, QualityGateFailed, StepPreempted, StepTimeout
    from conveyor.runtime.checkpoint import checkpoint, preempted, restore
    from conveyor.runtime.hooks import HookContext
    from conveyor.runtime.client import Client
    from conveyor.runtime.context import StepContext, get_step_context
    from conveyor.runtime.run import Run
    from conveyor.registry.api import register_model
    from conveyor.serving.endpoints import endpoints
    from conveyor.runtime.tracking import ActiveRun, log_artifact, log_metric, log_metrics, log_params, start_run
    from conveyor.train import tune


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor' has no attribute '{name}'")
    target = importlib.import_module(module)
    value = target if module == f"conveyor.{name}" else getattr(target, name)   # a subpackage
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
