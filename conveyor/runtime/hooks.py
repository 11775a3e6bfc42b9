"""Success and failure hooks of steps and pipelines: what they receive and how they are called.

A hook is a notification, not part of the work: one that raises is logged as a warning and
recorded as a run event (``hook_failed``), and the run's outcome stays what it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("conveyor.hooks")


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a hook is told: which run, which step (None for a pipeline hook), how it ended."""

    run_id: str
    pipeline: str
    step: str | None
    status: str                   # succeeded | cached | failed
    error: str | None = None


def call_hook(hook: Callable[[HookContext], Any] | None, context: HookContext, *, kind: str, metadata: Any) -> bool:
    """Call ``hook``; return False (after logging and recording it) when it raised."""
    if hook is None:
        return True
    try:
        hook(context)
        return True
    except Exception as exc:
        owner = f"step '{context.step}'" if context.step else f"pipeline '{context.pipeline}'"
        detail = f"{kind} hook of {owner} raised {type(exc).__name__}: {exc}"
        log.warning("Run %s: %s. The run's outcome is unchanged; fix the hook.", context.run_id, detail)
        try:
            metadata.runs.add_event(context.run_id, "hook_failed", detail[:1000])
        except Exception as store_exc:  # recording is best effort; the warning above already says it
            log.warning("Run %s: could not record the hook failure: %s", context.run_id, store_exc)
        return False
