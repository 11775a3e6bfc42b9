"""What calling a step inside a pipeline returns: handles to future outputs.

A handle stands for a value that exists only at run time. Using it as a plain Python value
(``if out:``, ``int(out)``, ``for x in out``) is a definition error, raised at build time.
"""

from __future__ import annotations

from typing import Any, NoReturn

from conveyor.dsl.graph import Condition, Const, Expr, Ref
from conveyor.errors import PipelineDefinitionError


def _as_expr(value: Any) -> Expr:
    return value._ref if isinstance(value, Output) else Const(value)


class Output:
    """A handle to one output of a step call (or an item inside it)."""

    __slots__ = ("_ref",)

    def __init__(self, ref: Ref) -> None:
        self._ref = ref

    def __repr__(self) -> str:
        path = "".join(f"[{p!r}]" for p in self._ref.path)
        return f"<output {self._ref.node}.{self._ref.output}{path}>"

    def __getitem__(self, key: Any) -> Output:
        return Output(Ref(self._ref.node, self._ref.output, (*self._ref.path, key)))

    # comparisons build run-time conditions for cv.when(...)
    def __ge__(self, other: Any) -> Condition:  # type: ignore[override]
        return Condition(self._ref, ">=", _as_expr(other))

    def __gt__(self, other: Any) -> Condition:
        return Condition(self._ref, ">", _as_expr(other))

    def __le__(self, other: Any) -> Condition:
        return Condition(self._ref, "<=", _as_expr(other))

    def __lt__(self, other: Any) -> Condition:
        return Condition(self._ref, "<", _as_expr(other))

    def __eq__(self, other: Any) -> Condition:  # type: ignore[override]
        return Condition(self._ref, "==", _as_expr(other))

    def __ne__(self, other: Any) -> Condition:  # type: ignore[override]
        return Condition(self._ref, "!=", _as_expr(other))

    __hash__ = object.__hash__

    def _plain(self, what: str) -> NoReturn:
        raise PipelineDefinitionError(
            f"The output of step '{self._ref.node}' is used as a plain value ({what}) while the pipeline "
            "is being built, but it only exists at run time. Pass it to another step, or use "
            f"`with cv.when({self._ref.node}_output >= x):` for a decision on its value."
        )

    def __bool__(self) -> bool:
        self._plain("in an `if`, `and`, `or` or `not`")

    def __iter__(self) -> NoReturn:
        self._plain("iterated or unpacked; declare several outputs with @step(outputs=[...]) "
                    "or fan out with step.map(...)")

    def __len__(self) -> int:
        self._plain("len()")

    def __int__(self) -> int:
        self._plain("int()")

    def __float__(self) -> float:
        self._plain("float()")

    def __index__(self) -> int:
        self._plain("an index or range()")

    def __str__(self) -> str:
        self._plain("str() or an f-string")

    def __format__(self, spec: str) -> str:
        self._plain("an f-string")

    def _arith(self, *_: Any) -> NoReturn:
        self._plain("arithmetic")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _arith
    __truediv__ = __rtruediv__ = __floordiv__ = __pow__ = __mod__ = _arith


class Outputs(tuple):
    """The handles of a step with several named outputs: unpack it or index by name."""

    _names: tuple[str, ...]

    def __new__(cls, node: str, names: tuple[str, ...]) -> Outputs:
        self = super().__new__(cls, (Output(Ref(node, n)) for n in names))
        self._names = names
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise PipelineDefinitionError(
                    f"Step output '{key}' does not exist. Its outputs are: {', '.join(self._names)}."
                ) from None
        return tuple.__getitem__(self, key)

    def __getattr__(self, name: str) -> Output:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


class MapOutput(Output):
    """The list of outputs of a fanned-out step; a join step receives it as a list."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<mapped output {self._ref.node}.{self._ref.output}>"
