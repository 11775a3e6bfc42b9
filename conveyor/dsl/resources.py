"""What a step asks of a machine, as numbers: ``memory="4Gi"`` in bytes.

One parser for the DSL (checked when the step is declared), every executor and every export
target, so a size that one accepts the others accept too.
"""

from __future__ import annotations

import re
from typing import Any

from conveyor.errors import PipelineDefinitionError

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def parse_memory(text: Any, step: str) -> int:
    """Bytes from ``"512Mi"``, ``"2G"``, ``"1.5GiB"``, ``"2GB"``, ``"1048576"`` or a number.

    Decimal units (``K``, ``M``, ``G``, ``T``, ``P``) are powers of 1000, binary ones (``Ki``…``Pi``)
    powers of 1024; a trailing ``B`` changes nothing. Raises PipelineDefinitionError naming the step.
    """
    if isinstance(text, int | float) and not isinstance(text, bool) and text >= 0:
        return int(text)
    match = _MEMORY.match(str(text)) if isinstance(text, str) else None
    if match is None:
        raise PipelineDefinitionError(f"Step '{step}': memory={text!r} is not a size. Write it like '512Mi', "
                                      "'2Gi' or '4G'.")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


__all__ = ["parse_memory"]
