"""Row filters for sources: a pyarrow expression pushed down to files, or a SQL WHERE clause.

A filter is given as a pyarrow expression (``pc.field("amount") > 10``), as a list of
``(column, op, value)`` tuples (pyarrow.parquet's conjunctive form; a list of such lists is an
OR of ANDs), or as a short Python-like expression over column names::

    "amount > 10 and country in ('FR', 'DE') and not refunded"

The text is parsed with :mod:`ast` and only comparisons, ``and``/``or``/``not``, ``in``,
``is None`` and literals are accepted, so a filter string never runs code.
"""

from __future__ import annotations

import ast
import datetime as _dt
from typing import Any

from conveyor.errors import ConfigurationError

_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_TUPLE_OPS = {"=": "==", "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
              "in": "in", "not in": "not in"}


class _Arrow:
    """Builds pyarrow expressions (pushed down by ``pyarrow.dataset``)."""

    @staticmethod
    def field(name: str) -> Any:
        import pyarrow.compute as pc

        return pc.field(name)

    @staticmethod
    def scalar(value: Any) -> Any:
        import pyarrow.compute as pc

        return pc.scalar(value)

    @staticmethod
    def isin(left: Any, values: list[Any]) -> Any:
        return left.isin(values)

    @staticmethod
    def is_null(left: Any) -> Any:
        return left.is_null()


class _SQL:
    """Builds SQLAlchemy clauses: literals become bound parameters, never SQL text."""

    @staticmethod
    def field(name: str) -> Any:
        import sqlalchemy as sa

        return sa.column(name)

    @staticmethod
    def scalar(value: Any) -> Any:
        import sqlalchemy as sa

        return sa.literal(value)

    @staticmethod
    def isin(left: Any, values: list[Any]) -> Any:
        return left.in_(values)

    @staticmethod
    def is_null(left: Any) -> Any:
        return left.is_(None)


def to_expression(value: Any, *, where: str = "filter") -> Any:
    """A ``pyarrow.compute.Expression`` for a filter in any accepted form (None stays None)."""
    import pyarrow.compute as pc

    if value is None or isinstance(value, pc.Expression):
        return value
    return _build(value, where, _Arrow)


def to_sql_clause(value: Any, *, where: str = "filter") -> Any:
    """A SQLAlchemy WHERE clause for a filter given as text or tuples (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, str | list | tuple):
        raise ConfigurationError(f"The {where} {value!r} cannot become SQL. Give it as text (\"score > 10\") or "
                                 "(column, op, value) tuples.")
    return _build(value, where, _SQL)


def _build(value: Any, where: str, backend: Any) -> Any:
    if isinstance(value, str):
        try:
            tree = ast.parse(value.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConfigurationError(f"The {where} {value!r} is not a valid expression ({exc.msg} at column "
                                     f"{exc.offset}). Write it like \"amount > 10 and country == 'FR'\".") from None
        return _Parser(value, where, backend).expr(tree.body)
    if isinstance(value, list | tuple) and value:
        groups = value if isinstance(value[0], list) else [value]
        ors = [_conjunction(group, where, backend) for group in groups]
        out = ors[0]
        for other in ors[1:]:
            out = out | other
        return out
    raise ConfigurationError(f"The {where} {value!r} is not understood. Give a string such as \"amount > 10\", "
                             "a list of (column, op, value) tuples, or a pyarrow.compute expression.")


def _conjunction(group: Any, where: str, backend: Any) -> Any:
    out = None
    for item in group:
        if not (isinstance(item, list | tuple) and len(item) == 3 and str(item[1]).lower() in _TUPLE_OPS):
            raise ConfigurationError(f"The {where} entry {item!r} must be (column, op, value) with op one of "
                                     f"{', '.join(_TUPLE_OPS)}.")
        name, op, literal = item
        term = _apply(backend, backend.field(str(name)), _TUPLE_OPS[str(op).lower()], literal)
        out = term if out is None else out & term
    if out is None:
        raise ConfigurationError(f"The {where} has an empty group of conditions; remove it.")
    return out


def _apply(backend: Any, left: Any, op: str, right: Any) -> Any:
    if op == "in":
        return backend.isin(left, list(right))
    if op == "not in":
        return ~backend.isin(left, list(right))
    return {"==": left.__eq__, "!=": left.__ne__, "<": left.__lt__, "<=": left.__le__,
            ">": left.__gt__, ">=": left.__ge__}[op](right)


class _Parser:
    def __init__(self, text: str, where: str, backend: Any) -> None:
        self.text, self.where, self.backend = text, where, backend

    def fail(self, node: ast.AST, why: str) -> ConfigurationError:
        part = ast.get_source_segment(self.text, node) or type(node).__name__
        return ConfigurationError(f"The {self.where} {self.text!r} cannot be used: {why} (at {part!r}). "
                                  "Filters take column names, literals, comparisons, 'in', 'is None', "
                                  "'and', 'or' and 'not'.")

    def expr(self, node: ast.AST) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [self.expr(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.expr(node.operand)
        if isinstance(node, ast.Compare):
            out = None
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                term = self.compare(left, op, right)
                out = term if out is None else out & term
                left = right
            return out
        if isinstance(node, ast.Name):          # a boolean column on its own
            return self.backend.field(node.id)
        raise self.fail(node, "only conditions are allowed here")

    def compare(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> Any:
        if isinstance(op, ast.Is | ast.IsNot):
            if not (isinstance(right, ast.Constant) and right.value is None):
                raise self.fail(right, "'is' compares with None only")
            term = self.backend.is_null(self.operand(left))
            return ~term if isinstance(op, ast.IsNot) else term
        if isinstance(op, ast.In | ast.NotIn):
            values = self.literal(right)
            if not isinstance(values, list | tuple | set):
                raise self.fail(right, "'in' needs a list or tuple of literals")
            return _apply(self.backend, self.operand(left), "in" if isinstance(op, ast.In) else "not in", values)
        symbol = _COMPARE.get(type(op))
        if symbol is None:
            raise self.fail(left, f"the operator {type(op).__name__} is not supported")
        return _apply(self.backend, self.operand(left), symbol, self.operand(right))

    def operand(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.backend.field(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "col" \
                and len(node.args) == 1 and isinstance(node.args[0], ast.Constant):
            return self.backend.field(str(node.args[0].value))      # col("a column with spaces")
        return self.backend.scalar(self.literal(node))

    def literal(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("date", "timestamp") \
                and len(node.args) == 1 and isinstance(node.args[0], ast.Constant):
            text = str(node.args[0].value)
            try:
                return _dt.date.fromisoformat(text) if node.func.id == "date" else _dt.datetime.fromisoformat(text)
            except ValueError:
                raise self.fail(node, f"{text!r} is not an ISO {node.func.id}") from None
        try:
            return ast.literal_eval(node)
        except ValueError:
            raise self.fail(node, "expected a literal (number, string, True/False/None, a list of them, "
                                  "date('2024-01-31') or timestamp('2024-01-31T12:00'))") from None
