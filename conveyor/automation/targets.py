"""What a schedule or trigger runs: a pipeline reference checked when it is created, not when it fires.

A ``FILE.py:PIPELINE`` reference is stored with the file's absolute path, so an agent started in
any folder runs the same file; the file must exist and define the pipeline. The parameters are
checked against the pipeline's own (names, required ones, types) with a sample of what the firing
will substitute for ``{object}``, ``{monitor}``… so a typo fails now with the fix in the message.
"""

from __future__ import annotations

import re
import time
from typing import Any

from conveyor.errors import InvalidRequest, ParameterError

#: What each kind of source can substitute into parameter values, with a sample value to type-check.
CAUSES: dict[str, dict[str, Any]] = {
    "schedule": {"kind": "schedule", "cron": "0 3 * * *", "due": 0.0},
    "data": {"kind": "data", "object": "file:///inbox/example.csv"},
    "monitor": {"kind": "monitor", "monitor": "monitor", "alert": "0" * 32, "message": "drift"},
    "stream": {"kind": "stream", "source": "redis://127.0.0.1:6379/0?stream=events", "messages": 1},
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_target(target: str, params: dict[str, Any], kind: str) -> str:
    """The stored form of ``target`` (absolute file path) after checking it and ``params``.

    Raises ``PipelineDefinitionError`` (the file or pipeline is missing) or ``ParameterError``
    (a parameter is unknown, missing or of the wrong type), both exit code 2.
    """
    from conveyor.automation.agent import substitute
    from conveyor.runtime.loader import load_pipeline

    pipeline = load_pipeline(target)
    cause = dict(CAUSES[kind], due=time.time()) if kind == "schedule" else CAUSES[kind]
    offered = sorted(k for k in cause if k != "kind")
    for key, value in params.items():
        for name in _PLACEHOLDER.findall(str(value)):
            if name not in cause:
                raise InvalidRequest(f"-p {key}={value}: {{{name}}} is not something a {kind} firing knows. "
                                     f"It offers: {', '.join('{' + o + '}' for o in offered)}.", field=key)
    try:
        pipeline.resolve(substitute(params, cause), from_text=True)
    except ParameterError as exc:
        raise ParameterError(f"{exc} (checked when the {kind} is created, so that no firing fails on it)") \
            from None
    return str(pipeline.ref or target)
