"""The names a piece of code reads: plain names, dotted chains, imports and lookups by computed name."""

from __future__ import annotations

import ast
from collections.abc import Iterator

# markers that cannot be Python names, put first in a chain
IMPORT, FROM, DYNAMIC = "<import>", "<from>", "<dynamic>"
IMPORT_MARKERS = (IMPORT, FROM)
DYNAMIC_CALLS = ("eval", "exec", "importlib.import_module", "__import__")


def references(tree: ast.AST) -> Iterator[tuple[str, ...]]:
    """Names and dotted chains (``helpers.clean``) read by the code, decorators included."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            base: ast.AST = node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                yield (base.id, *reversed(chain))
                continue
            stack.append(base)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            yield (node.id,)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from _import_refs(node)
            continue
        if isinstance(node, ast.arg | ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _string_annotation(node.annotation if isinstance(node, ast.arg) else node.returns)
        if isinstance(node, ast.Call):
            yield from _dynamic_refs(node)
            if _is_getattr_by_constant(node):   # the chain was yielded; the bare module name is not a use
                stack.extend([node.func, *node.args[2:], *node.keywords])
                continue
        stack.extend(ast.iter_child_nodes(node))


def _is_getattr_by_constant(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Name) and call.func.id == "getattr" and len(call.args) >= 2 \
        and isinstance(call.args[0], ast.Name) and isinstance(call.args[1], ast.Constant) \
        and isinstance(call.args[1].value, str)


def _dynamic_refs(call: ast.Call) -> Iterator[tuple[str, ...]]:
    """Lookups by computed name: ``getattr(helpers, "clean")`` is a chain; the rest is flagged."""
    func, args = call.func, call.args
    name = func.id if isinstance(func, ast.Name) else None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "importlib" \
            and func.attr == "import_module":
        name = "importlib.import_module"
    if name == "getattr" and len(args) >= 2 and isinstance(args[0], ast.Name):
        if isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
            yield (args[0].id, args[1].value)
        else:
            yield (DYNAMIC, args[0].id)
    elif name in ("importlib.import_module", "__import__"):
        if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            yield (IMPORT, args[0].value)
        else:
            yield (DYNAMIC, name)
    elif name in ("eval", "exec"):
        yield (DYNAMIC, name)


def _import_refs(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, ...]]:
    # encoded as a chain under a marker that cannot be a Python name
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield (IMPORT, alias.name)
    else:
        for alias in node.names:
            yield (FROM, "." * node.level + (node.module or ""), alias.name)


def _string_annotation(annotation: ast.AST | None) -> Iterator[tuple[str, ...]]:
    """Names inside a quoted annotation (``m: "model.Doubler"``): the step may run their code."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            yield from references(ast.parse(annotation.value, mode="eval"))
        except SyntaxError:
            return
