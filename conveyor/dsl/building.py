"""The build context: which pipeline is being built, and the conditions in force."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from conveyor.dsl.graph import Condition, Node, Ref
from conveyor.dsl.handles import Output
from conveyor.errors import PipelineDefinitionError


@dataclass
class BuildContext:
    """Collects nodes while a pipeline function runs."""

    pipeline: str
    nodes: list[Node] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def node_name(self, step_name: str) -> str:
        """``train`` for the first call, then ``train_2``, ``train_3``…"""
        n = self._counts.get(step_name, 0) + 1
        self._counts[step_name] = n
        return step_name if n == 1 else f"{step_name}_{n}"

    def add(self, node: Node) -> None:
        self.nodes.append(node)


_current: contextvars.ContextVar[BuildContext | None] = contextvars.ContextVar("cv_build", default=None)


def current_build() -> BuildContext | None:
    """The pipeline being built in this context, if any."""
    return _current.get()


@contextmanager
def building(pipeline: str) -> Iterator[BuildContext]:
    """Collect nodes for ``pipeline`` while the body runs."""
    ctx = BuildContext(pipeline)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


@contextmanager
def when(condition: Any) -> Iterator[None]:
    """Steps called inside run only if ``condition`` holds at run time.

    ``condition`` is a comparison on a step output (``report["auc"] >= 0.9``) or an output
    itself (its truth value).
    """
    from conveyor.dsl.graph import Condition as _Condition

    ctx = current_build()
    if ctx is None:
        raise PipelineDefinitionError(
            "cv.when(...) is used outside a pipeline. Use it inside a function decorated with @cv.pipeline."
        )
    if isinstance(condition, Output):
        condition = _Condition(condition._ref, "truthy")
    if not isinstance(condition, _Condition):
        raise PipelineDefinitionError(
            f"cv.when(...) needs a comparison on a step output, like `cv.when(report['auc'] >= 0.9)`, "
            f"not {type(condition).__name__} {condition!r}. A value known at build time needs a plain `if`."
        )
    ctx.conditions.append(condition)
    try:
        yield
    finally:
        ctx.conditions.pop()


def unless(output: Output) -> Condition:
    """The negation of an output's truth value, for ``cv.when(cv.unless(flag))``."""
    return Condition(output._ref, "falsy")


def _unused(_: Ref) -> None:  # keeps Ref imported for type readers
    return None
