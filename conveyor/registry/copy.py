"""Copying a model version to another registry: a model trained on one cloud, served from another.

The version travels with what explains it: its model artifact and reference profile (bytes and
records), its signature, metrics and tags, and its lineage (the runs and step runs that produced
it, with the records of every artifact they read or wrote). At the destination it keeps its
number when that number is free, else takes the next one; it starts ``pending`` there, since
approvals and aliases are decisions of each registry. Copying the same version again changes
nothing (see ``conveyor/store/copy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.registry.refs import ModelRef
from conveyor.registry.registry import ModelRegistry
from conveyor.store.artifacts.transfer import TransferProgress
from conveyor.store.copy import CopyReport, Stores, copy_bundle
from conveyor.store.metadata import ImportedVersion


@dataclass(frozen=True, slots=True)
class VersionCopy:
    """The version copied, as the destination numbers it, and what the copy did."""

    source: ModelRef
    version: ImportedVersion
    report: CopyReport

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "destination": f"{self.version.model}:{self.version.version}",
                "new": self.version.new, "renumbered": self.version.renumbered, **self.report.to_dict()}


def copy_version(source: ModelRegistry, dest: ModelRegistry, ref: str | ModelRef, *, with_data: bool = False,
                 progress: bool | TransferProgress | None = None) -> VersionCopy:
    """Copy the version ``ref`` names from ``source`` into ``dest`` (acting as ``dest.actor``).

    The bytes of the model and its profile are always copied; ``with_data`` copies the bytes of
    every artifact of its lineage too (the training data, intermediate outputs), so that its run
    can be resumed or its cache reused at the destination.
    """
    version = source.resolve(ref)
    bundle = source.metadata.bundles.collect(version_ids=[version.id])
    needed = None if with_data else [a for a in (version.artifact_id, version.profile_artifact_id) if a]
    report = copy_bundle(Stores(source.metadata, source.artifacts), Stores(dest.metadata, dest.artifacts), bundle,
                         with_bytes=needed, actor=dest.actor, progress=progress)
    imported = next(v for v in report.records.versions if v.source_version == version.version)
    return VersionCopy(ModelRef(version.model, version=version.version), imported, report)
