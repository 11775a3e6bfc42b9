"""Pipelines that consume a stream or queue; module-level so worker processes can import them."""

from __future__ import annotations

import conveyor as cv


@cv.step(cache=False, retries=1, backoff=0.01)
def consume(source: str, out: str, fail: str = "never") -> int:
    """Read a micro-batch and note its ids in ``out``; fail after reading when ``fail`` says so:
    ``always``, ``first`` (the first attempt only) or ``never``."""
    table = cv.data.read(source, max_wait=0.2)
    id_column = table.column_names[0]
    with open(out, "a") as fh:
        for value in table.column(id_column).to_pylist():
            fh.write(f"{cv.get_step_context().attempt} {value}\n")
    if fail == "always" or (fail == "first" and cv.get_step_context().attempt == 1):
        raise RuntimeError(f"consumer failed after reading {table.num_rows} messages")
    return table.num_rows


@cv.pipeline
def drain(source: str, out: str, fail: str = "never"):
    consume(source, out, fail)
