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
          workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
          chunk_rows: Annotated[int, typer.Option(help="Rows per chunk.")] = 100_000,
          fmt: Annotated[Optional[str], typer.Option("--format", help="parquet or csv (default: by name).")] = None,  # noqa: UP007
          overwrite: Annotated[bool, typer.Option(help="Replace an output of another run.")] = False,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Score a file with a registered model in chunks across processes; re-running resumes."""
    from conveyor.runtime.client import Client
    from conveyor.serving.batch import registered_model_loader, score_batch

    client = Client()
    version = client.registry.resolve(model)
    ref = f"{version.model}:{version.version}"
    features = [c["name"] for c in (version.signature or {}).get("inputs", [])] or None
    loader = functools.partial(registered_model_loader, client.settings.metadata_url, client.settings.artifact_root,
                               ref)
    digest = client.metadata.artifacts.get(version.artifact_id).content_hash
    result = score_batch(loader, input, output, model_version=ref, workers=workers, chunk_rows=chunk_rows,
                         features=features, fmt=fmt, overwrite=overwrite, progress=not as_json, model_digest=digest)
    data = {"output": result.output_uri, "model_version": result.model_version, "chunks": result.chunks,
            "chunks_scored": result.chunks_scored, "chunks_skipped": result.chunks_skipped,
            "rows_scored": result.rows_scored, "seconds": round(result.seconds, 3)}
    if as_json:
        print_json(data)
        return
    console().print(f"Scored {result.rows_scored:,} rows in {result.chunks_scored} chunks "
                    f"({result.chunks_skipped} already done) with {ref} → {output} in {result.seconds:.1f}s")
