"""Batch scoring as a pipeline step: ``score_file(model="churn@production", input=..., output=...)``."""

from __future__ import annotations

from conveyor.dsl import step


@step(cache=False)
def score_file(model: str, input: str, output: str, workers: int | None = 2, chunk_rows: int = 100_000,  # noqa: A002
               executor: str = "process") -> dict:
    """Score ``input`` with a registered model into the ``output`` folder; returns the run summary.

    ``executor="ray"`` (or ``"dask"``) scores on the configured cluster (``CONVEYOR_RAY_ADDRESS``);
    inside a step that already runs on Ray, on that same cluster."""
    import functools

    from conveyor.registry.api import _registry_for
    from conveyor.runtime.context import get_step_context
    from conveyor.serving.batch import registered_model_loader, score_batch

    ctx = get_step_context()
    registry = _registry_for(ctx.metadata_url, ctx.artifact_root, ctx.actor)
    version = registry.resolve(model)
    ref = f"{version.model}:{version.version}"
    features = [c["name"] for c in (version.signature or {}).get("inputs", [])] or None
    loader = functools.partial(registered_model_loader, ctx.metadata_url, ctx.artifact_root, ref)
    digest = registry.metadata.artifacts.get(version.artifact_id).content_hash
    shipped: object = loader
    if executor in ("ray", "dask"):
        from conveyor.serving.batch_bundle import bundle_from_registry

        shipped = bundle_from_registry(registry, ref)
    result = score_batch(shipped, input, output, model_version=ref, workers=workers, chunk_rows=chunk_rows,
                         features=features, progress=False, model_digest=digest, executor=executor)
    return {"output": output, "model_version": ref, "rows_scored": result.rows_scored,
            "chunks_scored": result.chunks_scored, "chunks_skipped": result.chunks_skipped}
