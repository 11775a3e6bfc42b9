"""``conveyor models copy`` and ``conveyor runs copy``: move a model version or runs to other stores.

The source is the store the settings name (``CONVEYOR_METADATA_URL``, ``CONVEYOR_ARTIFACT_ROOT``)
unless ``--from-metadata``/``--from-artifacts`` say otherwise; the destination is given in full.
Credentials for both object stores come from the environment, as for any other command.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json, size

ToMetadata = Annotated[str, typer.Option("--to-metadata", help="Destination metadata URL (sqlite:///…, "
                                                             "postgresql+psycopg://…).")]
ToArtifacts = Annotated[str, typer.Option("--to-artifacts", help="Destination artifact root (a folder, s3://, "
                                                               "gs://, az://).")]
FromMetadata = Annotated[Optional[str], typer.Option("--from-metadata",  # noqa: UP007
                                                     help="Source metadata URL (default: CONVEYOR_METADATA_URL).")]
FromArtifacts = Annotated[Optional[str], typer.Option("--from-artifacts",  # noqa: UP007
                                                      help="Source artifact root (default: CONVEYOR_ARTIFACT_ROOT).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ProgressOpt = Annotated[Optional[bool], typer.Option("--progress/--no-progress",  # noqa: UP007
                                                     help="Show a progress bar (default: on a terminal, "
                                                          "for copies of 64 MiB or more).")]


def _stores(metadata_url: str | None, artifact_root: str | None) -> Any:
    """A ``Stores`` pair from the settings, with either location replaced."""
    from conveyor.config import load_settings
    from conveyor.runtime.worker import artifact_store
    from conveyor.store.copy import Stores
    from conveyor.store.metadata import MetadataStore, Reconnect

    settings = load_settings()
    reconnect = Reconnect(retries=settings.metadata_retries, backoff_s=settings.metadata_backoff_s)
    return Stores(MetadataStore(metadata_url or settings.metadata_url, reconnect=reconnect),
                  artifact_store(artifact_root or settings.artifact_root, settings.inline_max_bytes))


def _summary(report: Any) -> str:
    moved = report.transfer
    parts = [f"{moved.copied} object(s) copied ({size(moved.bytes_copied)})",
             f"{moved.skipped} already there ({size(moved.bytes_skipped)})",
             f"{sum(report.records.inserted.values())} record(s) added"]
    if report.without_bytes:
        parts.append(f"{report.without_bytes} artifact(s) recorded without their bytes")
    return "; ".join(parts)


def copy_model(ref: Annotated[str, typer.Argument(help="NAME:VERSION, NAME@ALIAS or NAME (the latest)")],
               to_metadata: ToMetadata, to_artifacts: ToArtifacts, from_metadata: FromMetadata = None,
               from_artifacts: FromArtifacts = None,
               with_data: Annotated[bool, typer.Option("--with-data", help="Also copy the bytes of every artifact "
                                                       "of its lineage (training data, intermediate outputs).")]
               = False, progress: ProgressOpt = None, as_json: JsonOpt = False) -> None:
    """Copy a model version with its lineage, profile, signature, metrics and tags to another registry."""
    from conveyor.config import load_settings
    from conveyor.registry import ModelRegistry
    from conveyor.registry.copy import copy_version

    actor = load_settings().actor
    src, dst = _stores(from_metadata, from_artifacts), _stores(to_metadata, to_artifacts)
    try:
        done = copy_version(ModelRegistry(src.metadata, src.artifacts, actor),
                            ModelRegistry(dst.metadata, dst.artifacts, actor), ref, with_data=with_data,
                            progress=False if as_json else progress)
    finally:
        src.metadata.close()
        dst.metadata.close()
    if as_json:
        print_json(done.to_dict())
        return
    v = done.version
    target = f"{v.model}:{v.version}"
    if not v.new:
        head = f"{done.source} is already at the destination as {target}"
        head += "; nothing changed." if not done.report.changed else " (missing bytes or records were added)."
    elif v.renumbered:
        head = (f"Copied {done.source} to {dst.describe()} as {target}: version {v.source_version} was taken there "
                f"(pending approval).")
    else:
        head = f"Copied {done.source} to {dst.describe()} as {target} (pending approval)."
    console().print(head, highlight=False, soft_wrap=True)
    console().print(_summary(done.report), highlight=False, soft_wrap=True)


def copy_run(run_ids: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes).")],
             to_metadata: ToMetadata, to_artifacts: ToArtifacts, from_metadata: FromMetadata = None,
             from_artifacts: FromArtifacts = None,
             records_only: Annotated[bool, typer.Option("--records-only", help="Copy the records but not the "
                                                        "artifacts' bytes.")] = False,
             progress: ProgressOpt = None, as_json: JsonOpt = False) -> None:
    """Copy runs (steps, lineage, metrics, artifacts and their bytes) to another pair of stores."""
    from conveyor.config import load_settings
    from conveyor.store.copy import copy_runs

    src, dst = _stores(from_metadata, from_artifacts), _stores(to_metadata, to_artifacts)
    try:
        report = copy_runs(src, dst, run_ids, actor=load_settings().actor, with_bytes=not records_only,
                           progress=False if as_json else progress)
    finally:
        src.metadata.close()
        dst.metadata.close()
    if as_json:
        print_json(report.to_dict())
        return
    head = (f"Copied {len(run_ids)} run(s) to {dst.describe()}." if report.changed
            else "The destination already has these runs; nothing changed.")
    console().print(head, highlight=False, soft_wrap=True)
    console().print(_summary(report), highlight=False, soft_wrap=True)
