"""Schema files: YAML read with the line of every key, so a bad file's error names the line and the constraint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.data.validation.schema import Schema
from conveyor.errors import SchemaError

FIX = "Fix the schema file and run again (`conveyor data suggest` writes a valid one to start from)."


def load_schema(path: str | Path) -> Schema:
    """Read and check a schema file (YAML); SchemaError naming the file, line and constraint when it is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"No schema file at {p}. Write one, or let `conveyor data suggest DATA -o {p}` "
                          "propose it from a reference sample.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"Cannot read the schema file {p}: {exc}.") from None
    return parse_schema(text, source=str(p))


def parse_schema(text: str, *, source: str = "<schema>") -> Schema:
    """A schema from YAML text (JSON for a ``source`` ending in .json); ``source`` names it in errors."""
    import yaml

    if source.endswith(".json"):   # PyYAML reads YAML 1.1, which refuses some JSON (tabs): read JSON as JSON
        import json

        try:
            return _from_data(json.loads(text), source, {})
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{source} line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}). {FIX}") \
                from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            lines: dict[tuple[Any, ...], int] = {}
            if node is not None:
                _walk(node, (), lines, source)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source} line {mark.line + 1}, column {mark.column + 1}" if mark else source
        raise SchemaError(f"{where}: not valid YAML ({exc.problem or exc.context}). {FIX}") from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: not valid YAML ({exc}). {FIX}") from None
    return _from_data(data, source, lines)


def _from_data(data: Any, source: str, lines: dict[tuple[Any, ...], int]) -> Schema:
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: a schema file is a mapping with `columns:` (and optionally `rows:`, "
                          f"`rules:`), not {type(data).__name__}. {FIX}")
    from conveyor.data.validation.adapters import adapter_for

    adapter = adapter_for(data)
    if adapter == "great_expectations":   # a suite used as it is
        from conveyor.data.validation.adapters import from_great_expectations

        return from_great_expectations(data, source=source)
    if adapter == "pandera":
        from conveyor.data.validation.adapters import from_pandera

        return from_pandera(data, source=source)
    return schema_from_dict(data, source=source, lines=lines)


def schema_from_dict(data: dict[str, Any], *, source: str = "<schema>",
                     lines: dict[tuple[Any, ...], int] | None = None) -> Schema:
    """A schema from plain data (parsed YAML or JSON); SchemaError with the place of each problem."""
    from pydantic import ValidationError

    lines = lines or {}
    try:
        schema = Schema.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(_describe(exc, source, lines, data)) from None
    schema._source = source
    schema._lines = lines
    from conveyor.data.validation.constraints import compile_schema

    compile_schema(schema)   # semantic checks (policies that cannot apply) fail now, not at the first table
    return schema


def _walk(node: Any, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str) -> None:
    import yaml

    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SchemaError(f"{source} line {line}: key {key!r} appears twice (first on line {seen[key]}); "
                                  f"YAML would silently keep only the last one. {FIX}")
            seen[key] = line
            _walk(value_node, (*path, key), lines, source)
            lines[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, source)


def _describe(exc: Any, source: str, lines: dict[tuple[Any, ...], int], data: Any) -> str:
    problems: list[str] = []
    seen: set[str] = set()
    for err in exc.errors():
        path = _data_path(err["loc"], data)
        dotted = ".".join(str(p) for p in path) or "(top level)"
        if dotted in seen:   # a value that fits no branch of a union reports once per branch
            continue
        seen.add(dotted)
        line = next((lines[tuple(path[:n])] for n in range(len(path), -1, -1) if tuple(path[:n]) in lines), None)
        where = f"line {line}, " if line else ""
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key {path[-1]!r}" + _known_keys(path, data)
        problems.append(f"{where}{dotted}: {message}")
    shown = problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
    return f"{source}: " + "; ".join(shown) + f". {FIX}"


def _data_path(loc: tuple[Any, ...], data: Any) -> list[Any]:
    """The error's location with pydantic's union-branch labels (``list[...]``, ``function-after``) dropped."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict | list):
            if isinstance(part, str) and not any(ch in part for ch in "[]-") and isinstance(node, dict):
                path.append(part)   # a key that should be there, or one that should not
                break
    return path


def _known_keys(path: list[Any], data: Any) -> str:
    from conveyor.data.validation.schema import Column, Range, Rule, Rows

    parent = path[:-1]
    models = {(): Schema, ("rows",): Rows}
    model = models.get(tuple(parent))
    if model is None and len(parent) == 2 and parent[0] == "columns":
        model = Column
    elif model is None and len(parent) == 3 and parent[0] == "columns" and parent[2] == "range":
        model = Range
    elif model is None and len(parent) == 2 and parent[0] == "rules":
        model = Rule
    if model is None:
        return ""
    import difflib

    keys = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), keys, n=1)
    return (f" (did you mean {close[0]!r}?" if close else " (") + f" known keys: {', '.join(keys)})"
