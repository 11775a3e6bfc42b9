"""What both adapters share: reading their files, quoting names into rules, escaping literals into patterns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor.errors import SchemaError

#: pandas / NumPy dtype names (as both libraries write them) -> Conveyor types; None: no type constraint.
DTYPES: dict[str, str | None] = {
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8", "uint16": "uint16",
    "uint32": "uint32", "uint64": "uint64", "Int8": "int8", "Int16": "int16", "Int32": "int32", "Int64": "int64",
    "float16": "float16", "float32": "float32", "float64": "float64", "Float32": "float32", "Float64": "float64",
    "float": "float", "int": "integer", "str": "string", "string": "string", "string[python]": "string",
    "string[pyarrow]": "string", "StringDtype": "string", "bool": "boolean", "boolean": "boolean",
    "datetime64[ns]": "timestamp", "datetime64[us]": "timestamp", "datetime64[ms]": "timestamp",
    "datetime64[s]": "timestamp", "datetime": "timestamp", "date": "date", "object": None, "category": None,
}


def read_mapping(given: str | Path | dict[str, Any], *, what: str, source: str | None = None) -> tuple[dict[str, Any], str]:
    """The parsed file (JSON or YAML) or the dict itself, and a name for messages (``source`` if given)."""
    if isinstance(given, dict):
        return given, source or f"<{what}>"
    path = Path(given)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"Cannot read the {what} {path}: {exc}.") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as exc:   # json.JSONDecodeError, yaml.YAMLError
        raise SchemaError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc}).") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: a {what} is a mapping, not {type(data).__name__}.")
    return data, str(path)


def col(name: str) -> str:
    """A column reference for a rule, whatever characters the name has."""
    return f"col({json.dumps(name)})"


def literal(value: Any) -> str:
    return json.dumps(value)


def escape(text: str) -> str:
    """``text`` as a regular expression matching it literally."""
    return "".join("\\" + ch if ch in r".^$*+?{}[]\|()" else ch for ch in text)


def dtype(name: Any, where: str) -> str | None:
    if name is None:
        return None
    key = str(name)
    if key in DTYPES:
        return DTYPES[key]
    if key.startswith("datetime64"):
        return "timestamp"
    raise SchemaError(f"{where}: type {key!r} has no Conveyor equivalent; known: "
                      f"{', '.join(k for k in DTYPES)}.")


def unsupported(items: list[str], source: str, skip: bool, what: str) -> str | None:
    """Refuse what cannot be translated, or (``skip``) describe what was left out."""
    if not items:
        return None
    if not skip:
        raise SchemaError(f"{source}: {len(items)} {what} with no Conveyor equivalent: {'; '.join(items)}. Remove "
                          "them, express them as a rule, or pass skip_unsupported=True to leave them out.")
    return f"left out from {source}: " + "; ".join(items)
