"""Lengths of time as users write them on the command line: ``30d``, ``12h``, ``2w``, ``90m``."""

from __future__ import annotations

import re

from conveyor.errors import InvalidRequest

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_age(text: str, option: str = "--older-than") -> float:
    """Seconds in ``text``: a number with an optional unit s, m, h, d (default) or w."""
    match = _PATTERN.match(str(text).lower())
    if match is None:
        raise InvalidRequest(f"{option} {text!r} is not a length of time. Write a number and a unit, "
                             "e.g. 30d, 12h, 2w or 90m.")
    number, unit = match.groups()
    return float(number) * _UNITS[unit or "d"]


def describe_age(seconds: float) -> str:
    """``30d``, ``12h``, ``90m``: the shortest exact way to write ``seconds``."""
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"
