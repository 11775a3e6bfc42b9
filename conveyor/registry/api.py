"""``cv.register_model``: register from inside a step, a tracking run, or a plain script."""

from __future__ import annotations

import threading
from typing import Any

from conveyor.store.metadata import VersionRecord

_lock = threading.Lock()
_registries: dict[tuple[str, str, str], Any] = {}


def _registry_for(metadata_url: str, artifact_root: str, actor: str) -> Any:
    """One registry per store in this process (worker threads and processes reuse it)."""
    key = (metadata_url, artifact_root, actor)
    with _lock:
        reg = _registries.get(key)
        if reg is None:
            from conveyor.registry.registry import ModelRegistry
            from conveyor.runtime.worker import artifact_store
            from conveyor.store.metadata import MetadataStore

            reg = _registries[key] = ModelRegistry(MetadataStore(metadata_url), artifact_store(artifact_root, 65536),
                                                   actor)
    return reg


def register_model(name: str, model: Any, *, metrics: dict[str, float] | None = None,
                   tags: dict[str, Any] | None = None, signature: dict[str, Any] | None = None,
                   data: Any = None, target: Any = None, client: Any = None) -> VersionRecord:
    """Register ``model`` as the next version of ``name``; returns the version record.

    Inside a step the version is linked to that step run (lineage); inside ``cv.start_run`` to that
    run. In a task that reaches no database (an exported pipeline without ``CONVEYOR_METADATA_URL``)
    the model is stored and its registration written beside the run's records; ``conveyor runs
    import`` numbers it, so the record returned there has ``version=0``. ``data`` (training features) lets the signature be inferred when none is given, and is
    profiled (with the model's predictions and ``target``, the training labels, when given) as the
    reference monitoring compares live traffic with.
    """
    from conveyor.runtime.context import current_step
    from conveyor.runtime.tracking import _active

    step = current_step()
    if step is not None and step.metadata_url:
        registry = _registry_for(step.metadata_url, step.artifact_root, step.actor)
        return registry.register(name, model, metrics=metrics, tags=tags, signature=signature, data=data,
                                 target=target, run_id=step.run_id, step_run_id=step.step_run_id)
    if step is not None and step.artifact_root and client is None:
        # a task without a database (an exported pipeline): the registration travels with its records
        from conveyor.registry.pending import write_pending

        return write_pending(step, name, model, metrics=metrics, tags=tags, signature=signature, data=data,
                             target=target)
    run = _active.get()
    if run is not None and client is None:
        return run.client.registry.register(name, model, metrics=metrics, tags=tags, signature=signature, data=data,
                                            target=target, run_id=run.id)
    if client is None:
        from conveyor.runtime.client import Client

        client = Client()
    return client.registry.register(name, model, metrics=metrics, tags=tags, signature=signature, data=data,
                                    target=target)
