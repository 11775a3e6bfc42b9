"""Cross-column rules: a small, safe subset of Python expressions, evaluated over whole Arrow columns.

A rule is parsed with :mod:`ast` and checked against a short list of node kinds before anything
runs; evaluation maps each node to an Arrow compute kernel over whole columns (never ``eval``,
never a loop over rows). Names are columns (``col("unit price")`` for names that are not
identifiers); ``and``/``or``/``not`` follow SQL's three-valued logic, so a missing value makes
the result missing, and a rule passes where its result is missing.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_COMPARE = {ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal",
            ast.Gt: "greater", ast.GtE: "greater_equal"}
_ARITH = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Pow: "power"}
#: Functions a rule may call: name -> (number of arguments, what it does), checked when the rule is parsed.
FUNCTIONS: dict[str, tuple[int, str]] = {
    "abs": (1, "absolute value"), "sqrt": (1, "square root"), "log": (1, "natural logarithm"),
    "log10": (1, "base-10 logarithm"), "exp": (1, "e to the power"), "floor": (1, "round down"),
    "ceil": (1, "round up"), "round": (1, "round to the nearest whole number"),
    "isnull": (1, "true where missing"), "notnull": (1, "true where present"),
    "length": (1, "text length in characters"), "lower": (1, "text in lower case"),
    "upper": (1, "text in upper case"), "minimum": (2, "element-wise smaller"),
    "maximum": (2, "element-wise larger"), "between": (3, "lo <= x <= hi"),
    "col": (1, "the column named by a string"),
    "matches": (2, "true where the text contains a match of the regular expression (RE2)"),
}


def parse_rule(text: str) -> ast.Expression:
    """Parse and check a rule; ValueError naming the offending part (and what is allowed) otherwise."""
    return _parse(text)


@lru_cache(maxsize=512)
def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"rule {text!r} is not a Python expression ({exc.msg} at column {exc.offset})") from None
    for node in ast.walk(tree):
        _check_node(node, text)
    return tree


def _check_node(node: ast.AST, text: str) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
               ast.Constant, ast.List, ast.Tuple, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
               ast.Invert, ast.BitAnd, ast.BitOr, ast.Div, ast.FloorDiv, ast.Mod, ast.In, ast.NotIn, ast.Is,
               ast.IsNot, *_COMPARE, *_ARITH)
    where = f"rule {text!r}"
    if not isinstance(node, allowed):
        raise ValueError(f"{where}: {type(node).__name__} is not allowed; a rule uses columns, constants, "
                         "arithmetic, comparisons, and/or/not, `x in [...]`, `a if c else b` and the functions "
                         f"{', '.join(sorted(FUNCTIONS))}")
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS or node.keywords:
            raise ValueError(f"{where}: only these functions may be called, with positional arguments: "
                             f"{', '.join(sorted(FUNCTIONS))}")
        if len(node.args) != FUNCTIONS[name][0]:
            raise ValueError(f"{where}: {name}() takes {FUNCTIONS[name][0]} argument(s), got {len(node.args)}")
        if name == "matches" and not (isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            raise ValueError(f"{where}: matches() takes a regular expression in quotes as its second argument")
        if name == "col" and not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            raise ValueError(f"{where}: col() takes a column name in quotes, e.g. col(\"unit price\")")
    if isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and not _literal_list(right):
                raise ValueError(f"{where}: `in` takes a list of constants, e.g. country in [\"FR\", \"DE\"]")
            if isinstance(op, ast.Is | ast.IsNot) and not (isinstance(right, ast.Constant) and right.value is None):
                raise ValueError(f"{where}: `is` only compares with None (`x is None`, `x is not None`)")


def _literal_list(node: ast.AST) -> bool:
    return isinstance(node, ast.List | ast.Tuple) and all(isinstance(e, ast.Constant) for e in node.elts)


def columns_of(text: str) -> list[str]:
    """The columns a rule reads, in order of first use."""
    out: list[str] = []
    for node in ast.walk(_parse(text)):
        name = None
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            name = node.id
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "col":
            name = node.args[0].value  # type: ignore[attr-defined]
        if name is not None and name not in out:
            out.append(name)
    return out


def evaluate(text: str, column: Callable[[str], Any]) -> Any:
    """The rule's value over whole columns (``column(name)`` returns an Arrow array): an Arrow array."""
    return _Evaluator(column).visit(_parse(text).body)


class _Evaluator:
    def __init__(self, column: Callable[[str], Any]) -> None:
        import pyarrow.compute as pc

        self.pc = pc
        self.column = column

    def visit(self, node: ast.AST) -> Any:
        return getattr(self, f"_{type(node).__name__}")(node)

    def _Constant(self, node: ast.Constant) -> Any:
        import pyarrow as pa

        return pa.scalar(node.value)

    def _Name(self, node: ast.Name) -> Any:
        return self.column(node.id)

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        fn = self.pc.and_kleene if isinstance(node.op, ast.And) else self.pc.or_kleene
        values = [self._bool(self.visit(v)) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = fn(out, v)
        return out

    def _bool(self, value: Any) -> Any:
        import pyarrow as pa

        return value if value.type == pa.bool_() else self.pc.cast(value, pa.bool_())

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not | ast.Invert):
            return self.pc.invert(self._bool(value))
        return self.pc.negate(value) if isinstance(node.op, ast.USub) else value

    def _BinOp(self, node: ast.BinOp) -> Any:
        import pyarrow as pa

        pc = self.pc
        left, right = self.visit(node.left), self.visit(node.right)
        op = type(node.op)
        if op in _ARITH:
            return getattr(pc, _ARITH[op])(left, right)
        if op is ast.BitAnd:
            return pc.and_kleene(self._bool(left), self._bool(right))
        if op is ast.BitOr:
            return pc.or_kleene(self._bool(left), self._bool(right))
        # Python's / is true division and // floors, whatever the operands' types; Arrow divides integers
        # by truncation, so both go through float64
        lf, rf = pc.cast(left, pa.float64()), pc.cast(right, pa.float64())
        if op is ast.Div:
            return pc.divide(lf, rf)
        floored = pc.floor(pc.divide(lf, rf))
        if op is ast.FloorDiv:
            return floored
        return pc.subtract(lf, pc.multiply(floored, rf))   # Python's %: the sign of the divisor

    def _Compare(self, node: ast.Compare) -> Any:
        import pyarrow as pa

        pc = self.pc
        out = None
        left = self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if left is None:
                raise ValueError("a comparison cannot go on after `in [...]` or `is None`; join two with `and`")
            if isinstance(op, ast.In | ast.NotIn):
                values = pa.array([e.value for e in right_node.elts])  # type: ignore[attr-defined]
                arr = left if isinstance(left, pa.Array | pa.ChunkedArray) else pa.array([left.as_py()])
                if values.type != arr.type and len(values):
                    values = values.cast(arr.type)
                # a missing value is neither in nor out of the list: the result stays missing
                part = pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pc.is_in(arr, value_set=values))
                if isinstance(op, ast.NotIn):
                    part = pc.invert(part)
                right = None
            elif isinstance(op, ast.Is | ast.IsNot):
                part = pc.is_null(left, nan_is_null=True)
                if isinstance(op, ast.IsNot):
                    part = pc.invert(part)
                right = None
            else:
                right = self.visit(right_node)
                part = getattr(pc, _COMPARE[type(op)])(left, right)
            out = part if out is None else pc.and_kleene(out, part)
            left = right   # None after `in` / `is`: their right side (a list, None) cannot be chained on
        return out

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.pc.if_else(self._bool(self.visit(node.test)), self.visit(node.body), self.visit(node.orelse))

    def _Call(self, node: ast.Call) -> Any:
        import pyarrow as pa

        pc = self.pc
        name = node.func.id  # type: ignore[attr-defined]
        if name == "col":
            return self.column(node.args[0].value)  # type: ignore[attr-defined]
        if name == "matches":
            return pc.match_substring_regex(self.visit(node.args[0]), pattern=node.args[1].value)  # type: ignore[attr-defined]
        args = [self.visit(a) for a in node.args]
        if name == "isnull":
            return pc.is_null(args[0], nan_is_null=True)
        if name == "notnull":
            return pc.invert(pc.is_null(args[0], nan_is_null=True))
        if name == "between":
            return pc.and_kleene(pc.greater_equal(args[0], args[1]), pc.less_equal(args[0], args[2]))
        if name == "length":
            return pc.utf8_length(args[0])
        if name in ("lower", "upper"):
            return getattr(pc, f"utf8_{name}")(args[0])
        if name in ("minimum", "maximum"):
            return getattr(pc, "min_element_wise" if name == "minimum" else "max_element_wise")(*args)
        if name == "round":
            return pc.round(args[0])
        floating = {"sqrt": "sqrt", "log": "ln", "log10": "log10", "exp": "exp", "floor": "floor", "ceil": "ceil"}
        if name in floating:
            return getattr(pc, floating[name])(pc.cast(args[0], pa.float64()))
        return pc.abs(args[0])
