"""Pipeline definitions: steps, pipelines, conditions and fan-out. Pure; no I/O."""

from conveyor.dsl.building import unless, when
from conveyor.dsl.graph import Condition, Const, Graph, ListOf, Node, Ref
from conveyor.dsl.handles import MapOutput, Output, Outputs
from conveyor.dsl.pipeline import Pipeline, pipeline
from conveyor.dsl.step import Step, StepSpec, step, unmapped

__all__ = ["Condition", "Const", "Graph", "ListOf", "MapOutput", "Node", "Output", "Outputs", "Pipeline",
           "Ref", "Step", "StepSpec", "pipeline", "step", "unless", "unmapped", "when"]
