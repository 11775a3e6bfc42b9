"""The pipeline graph: immutable nodes and the input expressions that wire them.

A graph is data. Building it runs nothing and does no I/O; ``conveyor.runtime`` walks it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from conveyor.dsl.step import StepSpec


# --- input expressions -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Const:
    """A literal value known when the graph is built (a pipeline parameter or a constant)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Ref:
    """One output of an upstream node, optionally indexed into (``report["auc"]``)."""

    node: str
    output: str
    path: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ListOf:
    """A Python list whose items are expressions (``join([a, b, c])``)."""

    items: tuple[Expr, ...]


Expr = Const | Ref | ListOf


def refs_in(expr: Expr) -> Iterator[Ref]:
    """Yield every upstream reference inside an expression."""
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, ListOf):
        for item in expr.items:
            yield from refs_in(item)


# --- conditions --------------------------------------------------------------------------------

_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne, "truthy": lambda a, _b: bool(a),
    "falsy": lambda a, _b: not a,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """``left <op> right``, decided at run time on upstream outputs."""

    left: Expr
    op: str
    right: Expr = Const(None)

    def evaluate(self, left: Any, right: Any) -> bool:
        """Apply the comparison to resolved values."""
        return bool(_COMPARATORS[self.op](left, right))

    def describe(self) -> str:
        """A short human-readable form, e.g. ``evaluate.output['auc'] >= 0.9``."""
        def show(e: Expr) -> str:
            if isinstance(e, Const):
                return repr(e.value)
            if isinstance(e, Ref):
                return f"{e.node}.{e.output}" + "".join(f"[{p!r}]" for p in e.path)
            return "[…]"
        if self.op in ("truthy", "falsy"):
            return ("" if self.op == "truthy" else "not ") + show(self.left)
        return f"{show(self.left)} {self.op} {show(self.right)}"

    def refs(self) -> Iterator[Ref]:
        """Upstream references the condition reads."""
        yield from refs_in(self.left)
        yield from refs_in(self.right)


# --- nodes and graph ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Node:
    """One call of a step inside a pipeline."""

    name: str
    spec: StepSpec
    inputs: Mapping[str, Expr]
    conditions: tuple[Condition, ...] = ()
    map_over: tuple[str, ...] = ()   # input names that fan out, element by element
    after: tuple[str, ...] = ()      # nodes to wait for without taking their data (``after=``)
    name_by: Any = None              # a mapped node's element names: a callable or a key of the item
    max_parallel: int | None = None  # a mapped node's elements running at once at most (None: no limit)

    def upstream(self) -> set[str]:
        """Names of the nodes this one waits for (data, conditions and ``after=``)."""
        names = {r.node for e in self.inputs.values() for r in refs_in(e)}
        names.update(r.node for c in self.conditions for r in c.refs())
        names.update(self.after)
        return names

    @property
    def is_map(self) -> bool:
        """True when this node fans out over one or more list inputs."""
        return bool(self.map_over)


@dataclass(frozen=True)
class Graph:
    """An immutable, topologically ordered set of nodes."""

    name: str
    nodes: Mapping[str, Node]
    outputs: Any = None
    _downstream: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, name: str, nodes: list[Node], outputs: Any = None) -> Graph:
        """Check the wiring and freeze it."""
        by_name = {n.name: n for n in nodes}
        down: dict[str, list[str]] = {n.name: [] for n in nodes}
        for n in nodes:
            for up in n.upstream():
                if up not in by_name:
                    raise PipelineDefinitionError(
                        f"Step '{n.name}' uses an output of '{up}', which is not part of pipeline '{name}'. "
                        "Call that step inside the pipeline function before passing its output on."
                    )
                down[up].append(n.name)
        return cls(name=name, nodes=by_name, outputs=outputs,
                   _downstream={k: tuple(v) for k, v in down.items()})

    def downstream(self, node: str) -> tuple[str, ...]:
        """Direct consumers of a node's outputs."""
        return self._downstream.get(node, ())

    def __len__(self) -> int:
        return len(self.nodes)
