"""Pipeline parameters: declared by the pipeline function's signature, checked and coerced."""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ParameterError

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class Parameter:
    """One declared pipeline parameter."""

    name: str
    annotation: Any
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def type_name(self) -> str:
        return describe_type(self.annotation)


def declared_parameters(fn: Callable[..., Any]) -> dict[str, Parameter]:
    """Read the parameters from a pipeline function's signature (annotations resolved)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:   # one annotation names something undefined: resolve the others one by one
        hints = _hints_one_by_one(fn)
    out: dict[str, Parameter] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = Parameter(p.name, hints.get(p.name, p.annotation), p.default)
    return out


def describe_type(annotation: Any) -> str:
    """A type as a user reads it: ``bool or None``, ``list[int]``, ``one of 'a', 'b'``."""
    a = annotation
    if a is _REQUIRED or a is Any:
        return "any"
    if a is type(None):
        return "None"
    origin, args = typing.get_origin(a), typing.get_args(a)
    if origin in (typing.Union, types.UnionType):
        arms = [describe_type(x) for x in args if x is not type(None)]
        return " or ".join(arms) + (" or None" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(x) for x in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin).replace("typing.", ""))
        shown = ", ".join("..." if x is Ellipsis else describe_type(x) for x in args)
        return f"{name}[{shown}]" if args else name
    return getattr(a, "__name__", None) or str(a).replace("typing.", "")


_NO = object()   # "the value does not conform"


def conform(annotation: Any, value: Any) -> Any:
    """``value`` checked against ``annotation`` (ints widened to float), or ``_NO``.

    Unions try each arm in order; ``list[T]``, ``tuple[...]``, ``set[T]`` and ``dict[K, V]`` check
    their elements; annotations that cannot be checked (strings, type variables) accept anything.
    """
    a = annotation
    if a is _REQUIRED or a is Any:
        return value
    if a is type(None):
        return value if value is None else _NO
    origin, args = typing.get_origin(a), typing.get_args(a)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            out = conform(arm, value)
            if out is not _NO:
                return out
        return _NO
    if origin is typing.Literal:
        return value if any(value == x and type(value) is type(x) for x in args) else _NO
    if a is float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _NO
    if a is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if origin in (list, set, frozenset):
        if not isinstance(value, list | tuple | set | frozenset):
            return _NO
        items = [conform(args[0], v) for v in value] if args else list(value)
        return _NO if any(i is _NO for i in items) else origin(items)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return _NO
        if not args:
            return tuple(value)
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            return _NO
        items = [conform(k, v) for k, v in zip(kinds, value, strict=True)]
        return _NO if any(i is _NO for i in items) else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            return _NO
        if not args:
            return value
        out = {conform(args[0], k): conform(args[1], v) for k, v in value.items()}
        return _NO if any(k is _NO or v is _NO for k, v in out.items()) else out
    if origin is not None:
        return value if isinstance(origin, type) and isinstance(value, origin) else _NO
    if isinstance(a, type):
        return value if isinstance(value, a) else _NO
    return value


def _from_text(annotation: Any, raw: str) -> Any:
    """Parse ``-p key=value`` text as ``annotation``; ValueError when it cannot be."""
    a = annotation
    if a is _REQUIRED or a is Any or a is str:
        return raw
    origin, args = typing.get_origin(a), typing.get_args(a)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and raw.strip().lower() in ("none", "null", ""):
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _from_text(arm, raw)
            except ValueError:
                continue
        raise ValueError(raw)
    if origin is typing.Literal:
        for x in args:
            if str(x) == raw or isinstance(x, str) is False and repr(x) == raw:
                return x
        raise ValueError(raw)
    if a is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if a is int:
        return int(raw)
    if a is float:
        return float(raw)
    if a is type(None):
        if raw.strip().lower() in ("none", "null", ""):
            return None
        raise ValueError(raw)
    if not isinstance(a, type) and origin is None:
        return raw     # an annotation we cannot check: keep the text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(raw) from None
    out = conform(a, value)
    if out is _NO:
        raise ValueError(raw)
    return out


def _hints_one_by_one(fn: Callable[..., Any]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for name, raw in getattr(fn, "__annotations__", {}).items():
        try:
            hints[name] = eval(raw, getattr(fn, "__globals__", {})) if isinstance(raw, str) else raw  # noqa: S307
        except Exception as exc:
            logging.getLogger("conveyor.dsl").warning(
                "Pipeline '%s': the annotation %r of parameter '%s' could not be resolved (%s: %s); that "
                "parameter is not type-checked. Import the names it uses at module level.",
                getattr(fn, "__name__", fn), raw, name, type(exc).__name__, exc)
    return hints


def _coerce_text(param: Parameter, raw: str) -> Any:
    """Turn ``-p key=value`` text into the declared type."""
    try:
        return _from_text(param.annotation, raw)
    except ValueError:
        raise ParameterError(
            f"Parameter '{param.name}' expects {param.type_name}, got {raw!r}. "
            f"Pass e.g. -p {param.name}={_example(param.annotation)}."
        ) from None


def _example(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        arms = [x for x in args if x is not type(None)]
        return _example(arms[0]) if arms else "none"
    if origin is typing.Literal and args:
        return str(args[0])
    if origin is list and args:
        inner = _example(args[0])
        return f"[{inner},{inner}]" if inner != "text" else '["a","b"]'
    target = origin or annotation
    return {int: "10", float: "0.5", bool: "true", str: "text", list: "[1,2]", tuple: "[1,2]", set: "[1,2]",
            dict: '{"a":1}'}.get(target, "VALUE")


def _check_type(param: Parameter, value: Any) -> Any:
    if value is None and param.default is None:
        return value
    out = conform(param.annotation, value)
    if out is _NO:
        raise ParameterError(
            f"Parameter '{param.name}' expects {param.type_name}, got {type(value).__name__} {value!r}. "
            f"Pass e.g. {param.name}={_example(param.annotation)}."
        )
    return out


def coerce_text_parameters(pipeline: str, declared: Mapping[str, Parameter],
                           given: Mapping[str, str]) -> dict[str, Any]:
    """Check the names of ``-p key=value`` pairs and turn their text into the declared types."""
    _check_names(pipeline, declared, given)
    return {k: _check_type(declared[k], _coerce_text(declared[k], v) if isinstance(v, str) else v)
            for k, v in given.items()}


def _check_names(pipeline: str, declared: Mapping[str, Parameter], given: Mapping[str, Any]) -> None:
    for key in given:
        if key not in declared:
            hint = difflib.get_close_matches(key, list(declared), n=1) or [
                d for d in declared if d.lower() == key.lower()]
            raise ParameterError(
                f"Pipeline '{pipeline}' has no parameter '{key}'. "
                f"Its parameters are: {', '.join(declared) or '(none)'}."
                + (f" Did you mean '{hint[0]}'?" if hint else "")
            )


def resolve_parameters(pipeline: str, declared: Mapping[str, Parameter], given: Mapping[str, Any],
                       *, from_text: bool = False) -> dict[str, Any]:
    """Check names, fill defaults, coerce text values and check types."""
    _check_names(pipeline, declared, given)
    values: dict[str, Any] = {}
    for name, param in declared.items():
        if name in given:
            raw = given[name]
            value = _coerce_text(param, raw) if from_text and isinstance(raw, str) else raw
            values[name] = _check_type(param, value)
        elif param.required:
            raise ParameterError(
                f"Pipeline '{pipeline}' needs parameter '{name}' ({param.type_name}). "
                f"Pass it as {name}=... in Python or -p {name}=... on the command line."
            )
        else:
            values[name] = param.default
    return values
