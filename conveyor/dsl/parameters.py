"""Pipeline parameters: declared by the pipeline function's signature, checked and coerced."""

from __future__ import annotations

import difflib
import inspect
import json
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
        a = self.annotation
        if a is _REQUIRED or a is Any:
            return "any"
        return getattr(a, "__name__", None) or str(a).replace("typing.", "")


def declared_parameters(fn: Callable[..., Any]) -> dict[str, Parameter]:
    """Read the parameters from a pipeline function's signature (annotations resolved)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    out: dict[str, Parameter] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = Parameter(p.name, hints.get(p.name, p.annotation), p.default)
    return out


def _coerce_text(param: Parameter, raw: str) -> Any:
    """Turn ``-p key=value`` text into the declared type."""
    target = _plain_type(param.annotation)
    try:
        if target is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if target is int:
            return int(raw)
        if target is float:
            return float(raw)
        if target is str or target is None:
            return raw
        if target in (list, dict, tuple):
            value = json.loads(raw)
            return tuple(value) if target is tuple else value
        return json.loads(raw)
    except (ValueError, json.JSONDecodeError):
        raise ParameterError(
            f"Parameter '{param.name}' expects {param.type_name}, got {raw!r}. "
            f"Pass e.g. -p {param.name}={_example(target)}."
        ) from None


def _plain_type(annotation: Any) -> Any:
    if annotation is _REQUIRED or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain_type(args[0]) if len(args) == 1 else None
    if origin is not None:
        return origin
    return annotation if isinstance(annotation, type) else None


def _example(target: Any) -> str:
    return {int: "10", float: "0.5", bool: "true", str: "text", list: "[1,2]", dict: '{"a":1}'}.get(target, "VALUE")


def _check_type(param: Parameter, value: Any) -> Any:
    target = _plain_type(param.annotation)
    if target is None or value is None and param.default is None:
        return value
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target in (int, float) and isinstance(value, bool):
        pass
    elif isinstance(value, target):
        return value
    raise ParameterError(
        f"Parameter '{param.name}' expects {param.type_name}, got {type(value).__name__} {value!r}."
    )


def resolve_parameters(pipeline: str, declared: Mapping[str, Parameter], given: Mapping[str, Any],
                       *, from_text: bool = False) -> dict[str, Any]:
    """Check names, fill defaults, coerce text values and check types."""
    for key in given:
        if key not in declared:
            hint = difflib.get_close_matches(key, list(declared), n=1) or [
                d for d in declared if d.lower() == key.lower()]
            raise ParameterError(
                f"Pipeline '{pipeline}' has no parameter '{key}'. "
                f"Its parameters are: {', '.join(declared) or '(none)'}."
                + (f" Did you mean '{hint[0]}'?" if hint else "")
            )
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
