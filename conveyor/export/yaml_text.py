"""YAML text for every exported definition and manifest, without a YAML library: block style, deterministic.

Scalars that are not plain words are written as JSON strings (JSON's escapes are a subset of
YAML's double-quoted ones); multi-line text that a literal block keeps exactly is written as one.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars; scalars quoted as JSON (a subset of YAML's double quotes)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}\n"
        lines = []
        for k, v in value.items():
            key = k if _PLAIN.fullmatch(k) and k.lower() not in _YAML_WORDS else _quoted(k)
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{key}:\n{to_yaml(v, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(v, indent + 2)}\n")
        return "".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]\n"
        lines = []
        for v in value:
            if isinstance(v, (dict, list)) and v:
                text = to_yaml(v, indent + 2)
                lines.append(f"{pad}- {text[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_scalar(v, indent + 2)}\n")
        return "".join(lines)
    return _scalar(value, indent) + "\n"


def _scalar(v: Any, indent: int) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    if isinstance(v, str) and "\n" in v and _literal_ok(v) and not _UNPRINTABLE.search(v):
        pad = " " * indent
        chomp = "+" if v.endswith("\n\n") else ("" if v.endswith("\n") else "-")
        body = v.removesuffix("\n")
        return f"|{chomp}\n" + "\n".join(pad + line if line else "" for line in body.split("\n"))
    if isinstance(v, str) and _PLAIN.fullmatch(v) and v.lower() not in _YAML_WORDS:
        return v
    if isinstance(v, str):
        return _quoted(v)
    if isinstance(v, float) and not isinstance(v, bool):
        if v != v or v in (float("inf"), float("-inf")):
            return ".nan" if v != v else ("-.inf" if v < 0 else ".inf")
        text = repr(v)      # YAML 1.1 reads an exponent as a number only after a dot: 1.0e-09, not 1e-09
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    return json.dumps(v)


# what YAML does not keep as it is unescaped: controls, line separators (NEL, U+2028/9), the BOM
# (JSON escapes the C0 controls itself)
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def _quoted(text: str) -> str:
    """A double-quoted scalar: JSON's escapes, other characters as they are unless YAML needs them escaped."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def _literal_ok(v: str) -> bool:
    """A literal block keeps the text exactly when no line starts or ends with blanks it would lose."""
    lines = v.split("\n")
    return (not v.startswith((" ", "\n")) and "\t" not in v and "\r" not in v
            and all(line == line.rstrip() for line in lines))
