"""Conveyor: pipelines, tracking, registry, serving and monitoring for machine-learning models."""

from conveyor.dsl import Pipeline, Step, pipeline, step, unless, unmapped, when
from conveyor.errors import ConveyorError
from conveyor.runtime.client import Client
from conveyor.runtime.context import StepContext, get_step_context
from conveyor.runtime.run import Run
from conveyor.runtime.tracking import ActiveRun, log_artifact, log_metric, log_metrics, log_params, start_run

__version__ = "0.1.0"

__all__ = ["ActiveRun", "Client", "ConveyorError", "Pipeline", "Run", "Step", "StepContext", "get_step_context",
           "log_artifact", "log_metric", "log_metrics", "log_params", "pipeline", "start_run", "step", "unless",
           "unmapped", "when"]
