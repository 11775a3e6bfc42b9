"""``conveyor batch score``."""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import typer

from conveyor.cli.output import console, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("score")
def score(model: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")],
          input: Annotated[str, typer.Option("--input", help="Parquet or CSV file (any fsspec URL).")],  # noqa: A002
          output: Annotated[str, typer.Option("--output", help="Output folder (any fsspec URL).")],
          workers: Annotated[Optional[int], typer.Option(  # noqa: UP007
              help="Chunks scored at once: worker processes (default 2), or tasks on a cluster (default: its CPUs)."
          )] = None,
          chunk_rows: Annotated[int, typer.Option(help="Rows per chunk.")] = 100_000,
          fmt: Annotated[Optional[str], typer.Option("--format", help="parquet or csv (default: by name).")] = None,  # noqa: UP007
          overwrite: Annotated[bool, typer.Option(help="Replace an output of another run.")] = False,
          as_json: Annotated[bool, typer.Option("--json")] = False,
          executor: Annotated[Optional[str], typer.Option(  # noqa: UP007
              help="process (local worker processes), ray or dask (tasks on a cluster). Default: ray or dask when "
                   "CONVEYOR_EXECUTOR names it, else process.")] = None,
          address: Annotated[Optional[str], typer.Option(  # noqa: UP007
              help="The cluster (default: CONVEYOR_RAY_ADDRESS or RAY_ADDRESS for ray, DASK_SCHEDULER_ADDRESS for "
                   "dask; none: a local one on 127.0.0.1).")] = None) -> None:
    """Score a file with a registered model in chunks across processes or a cluster; re-running resumes."""
    from conveyor.runtime.client import Client
    from conveyor.serving.batch import BATCH_EXECUTORS, registered_model_loader, score_batch

    client = Client()
    if executor is None:
        executor = client.settings.executor if client.settings.executor in BATCH_EXECUTORS else "process"
    version = client.registry.resolve(model)
    ref = f"{version.model}:{version.version}"
    features = [c["name"] for c in (version.signature or {}).get("inputs", [])] or None
    loader = functools.partial(registered_model_loader, client.settings.metadata_url, client.settings.artifact_root,
                               ref)
    digest = client.metadata.artifacts.get(version.artifact_id).content_hash
    model: object = loader
    if executor in ("ray", "dask"):   # the registry's bytes, read and checked here once, shipped once per worker
        from conveyor.serving.batch_bundle import bundle_from_registry

        model = bundle_from_registry(client.registry, ref)
    result = score_batch(model, input, output, model_version=ref, workers=workers, chunk_rows=chunk_rows,
                         features=features, fmt=fmt, overwrite=overwrite, progress=not as_json, model_digest=digest,
                         executor=executor, address=address)
    data = {"output": result.output_uri, "model_version": result.model_version, "chunks": result.chunks,
            "chunks_scored": result.chunks_scored, "chunks_skipped": result.chunks_skipped,
            "rows_scored": result.rows_scored, "seconds": round(result.seconds, 3)}
    if as_json:
        print_json(data)
        return
    console().print(f"Scored {result.rows_scored:,} rows in {result.chunks_scored} chunks "
                    f"({result.chunks_skipped} already done) with {ref} → {output} in {result.seconds:.1f}s")
