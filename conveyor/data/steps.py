"""Sources as pipeline steps: ``cv.data.read_step(location, **options)`` reads into an Arrow table.

Inside a ``@cv.pipeline`` body it adds a step (named ``read`` unless ``name=`` says otherwise)
whose output is the table, an ``arrow.ipc`` artifact whose metadata names the source as
``describe()`` shows it (never a password); the run's parameters record it too. Outside a
pipeline it reads at once. The step is never served from the cache: what a source holds changes
without the step's code or arguments changing.

``watermark="orders"`` (or ``True``: keyed by the source's description) reads only what is new
since the last successful run of the same pipeline; see :mod:`conveyor.data.watermarks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    import pyarrow as pa

SOURCE_METADATA_KEY = b"conveyor.source"


def read_source(location: str, options: dict[str, Any] | None = None, watermark: str | bool | None = None) -> pa.Table:
    """The body of a read step: open the source, resume after the pipeline's watermark, read it all."""
    from conveyor.data import watermarks as incremental
    from conveyor.data.sources import open_source
    from conveyor.runtime.context import current_step

    source = open_source(location, **(options or {}))
    ctx = current_step()
    staged: tuple[Any, str, str] | None = None
    if watermark:
        if ctx is None:
            raise ConfigurationError(f"read_step(..., watermark=...) outside a pipeline run has no pipeline to keep "
                                     f"the watermark of {source.describe()}. Use `with cv.data.incremental(source, "
                                     "pipeline='name') as s:` in plain Python.")
        if not ctx.metadata_url:
            raise ConfigurationError(f"Step '{ctx.node_name}' reads {source.describe()} incrementally but runs "
                                     "without a metadata database to keep the watermark in. Give the run one "
                                     "(CONVEYOR_METADATA_URL, or --metadata-url when exporting).")
        metadata = incremental.metadata_for(ctx.metadata_url)
        pipeline = metadata.runs.get(ctx.run_id).pipeline_name or ctx.run_id
        key = incremental.watermark_key(source, watermark if isinstance(watermark, str) else None)
        before = incremental.resume(source, metadata, pipeline, key)
        staged = (metadata, pipeline, key)
    table = source.read()
    described = source.describe()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SOURCE_METADATA_KEY: described.encode()})
    if ctx is not None:
        ctx.log_params({f"{ctx.node_name}.source": described})
    if staged is not None:
        metadata, pipeline, key = staged
        after = source.watermark()   # type: ignore[attr-defined]
        if after is not None and after != before:
            # counts only once this run succeeded: a failed run is read again by the next one
            metadata.watermarks.stage(pipeline, key, after, ctx.run_id)   # type: ignore[union-attr]
    return table


def read_step(location_or_kind: str, *, name: str = "read", watermark: str | bool | None = None,
              retries: int = 0, **options: Any) -> Any:
    """Add a step that reads a source into an Arrow table (in a pipeline body), or read it now.

    ``options`` are the source's own (``columns=``, ``filter=``, ``query=``, ``params=``, ...);
    they must be plain values (a filter as text or tuples, not a pyarrow expression) so the step
    can run in another process or be exported.
    """
    import pyarrow.compute as pc

    from conveyor.dsl.building import current_build
    from conveyor.dsl.step import step
    from conveyor.errors import PipelineDefinitionError

    if current_build() is not None and isinstance(options.get("filter"), pc.Expression):
        raise PipelineDefinitionError(
            f"read_step '{name}': a pyarrow expression filter cannot be stored with the pipeline. Write it as text "
            f"(filter=\"amount > 10 and country == 'FR'\") or as (column, op, value) tuples.")
    body = step(name=name, cache=False, retries=retries)(read_source)
    return body(location_or_kind, options or None, watermark)


__all__ = ["SOURCE_METADATA_KEY", "read_source", "read_step"]
