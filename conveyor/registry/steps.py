"""A ready-made step that registers a model: ``cv.registry.steps.register(model, name="churn")``."""

from __future__ import annotations

from typing import Any

from conveyor.dsl import step


@step(cache=False)
def register(model: Any, name: str, metrics: dict | None = None, data: Any = None,
             alias: str | None = None) -> dict:
    """Register ``model`` under ``name`` (optionally moving an unprotected ``alias`` to it)."""
    from conveyor.registry.api import _registry_for, register_model
    from conveyor.runtime.context import get_step_context

    numeric = {k: v for k, v in (metrics or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    version = register_model(name, model, metrics=numeric, data=data)
    if alias:
        ctx = get_step_context()
        _registry_for(ctx.metadata_url, ctx.artifact_root, ctx.actor).set_alias(name, alias, version.version)
    return {"model": name, "version": version.version, "alias": alias, "metrics": numeric}
