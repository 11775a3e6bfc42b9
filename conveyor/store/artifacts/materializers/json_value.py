"""Plain data (dict, list, str, int, float, bool, None) as canonical JSON."""

from __future__ import annotations

import math
from typing import Any, BinaryIO

import orjson

MAX_INT = 2**63


def is_plain_json(value: Any) -> bool:
    """True when JSON round-trips the value exactly (no tuples, NaN, huge ints, non-str keys)."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -MAX_INT <= value < MAX_INT
    if type(value) is float:      # not numpy.float64, a float subclass that JSON would turn into float
        return math.isfinite(value)
    if type(value) is list:
        return all(is_plain_json(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and is_plain_json(v) for k, v in value.items())
    return False


class JsonMaterializer:
    name = "json"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return is_plain_json(value)

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        out.write(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        return {"kind": type(value).__name__}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        return orjson.loads(data)
