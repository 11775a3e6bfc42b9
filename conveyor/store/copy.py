"""Copying runs (and the model versions they produced) from one pair of stores to another.

The order is what keeps the destination consistent: the bytes first (``transfer``: streamed,
verified on arrival, resumable), then the records in one transaction (``Bundles.absorb``), so a
record never points at bytes that did not arrive, and a refused object leaves nothing recorded.
Both halves skip what the destination already has, so a copy that stopped half-way is finished by
running it again, and a finished copy run again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conveyor.store.artifacts.store import ArtifactStore, StoredArtifact
from conveyor.store.artifacts.transfer import TransferProgress, TransferReport, transfer
from conveyor.store.metadata import MetadataStore, redact
from conveyor.store.metadata.bundles import AbsorbReport, RecordBundle


@dataclass(frozen=True, slots=True)
class Stores:
    """One metadata store and the artifact store its records point into."""

    metadata: MetadataStore
    artifacts: ArtifactStore

    def describe(self) -> str:
        """Both locations, the password of a database URL hidden."""
        return f"{redact(self.metadata.url)} + {self.artifacts.root}"


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy did: the bytes moved, the records inserted, the artifacts recorded without bytes."""

    transfer: TransferReport
    records: AbsorbReport
    without_bytes: int       # artifact records copied whose bytes were not asked for

    @property
    def changed(self) -> bool:
        """False when the destination already had everything (a repeated copy)."""
        return bool(self.transfer.copied or self.records.inserted)

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.transfer.to_dict(), "records": self.records.inserted,
                "artifacts_without_bytes": self.without_bytes,
                "versions": [{"model": v.model, "source_version": v.source_version, "version": v.version,
                              "new": v.new, "renumbered": v.renumbered} for v in self.records.versions]}


def stored_from_row(row: dict[str, Any]) -> StoredArtifact:
    """The artifact store's description of an artifact row."""
    return StoredArtifact(content_hash=row["content_hash"], materializer=row["materializer"],
                          materializer_version=row["materializer_version"], type_name=row["type_name"] or "",
                          size=row["size"] or 0, uri=row["uri"], inline=row["inline"], meta=row["meta"] or {})


def copy_bundle(src: Stores, dst: Stores, bundle: RecordBundle, *, with_bytes: Iterable[str] | None = None,
                actor: str, progress: bool | TransferProgress | None = None,
                verify_existing: bool = True) -> CopyReport:
    """Copy the bytes of the bundle's artifacts, then absorb its records into ``dst``.

    ``with_bytes``: the artifact ids whose bytes are copied (None: all of them). The others are
    recorded at the destination all the same (lineage names them); a step that needs such bytes
    there finds them missing and is computed again, as after a lost object.
    """
    rows = bundle.rows("artifacts")
    wanted = None if with_bytes is None else set(with_bytes)
    chosen = [stored_from_row(r) for r in rows if wanted is None or r["id"] in wanted]
    moved = transfer(src.artifacts, dst.artifacts, chosen, progress=progress, verify_existing=verify_existing)

    def on_destination(row: dict[str, Any]) -> dict[str, Any]:
        if row["uri"] is not None:
            row["uri"] = dst.artifacts.relocated(stored_from_row(row)).uri
        return row

    records = dst.metadata.bundles.absorb(bundle.with_artifacts(on_destination), actor=actor,
                                          source=src.describe())
    without = sum(1 for r in rows if r["uri"] is not None and r["content_hash"] not in moved.artifacts)
    return CopyReport(moved, records, without)


def copy_runs(src: Stores, dst: Stores, run_ids: Iterable[str], *, actor: str, with_bytes: bool = True,
              progress: bool | TransferProgress | None = None) -> CopyReport:
    """Copy runs: their records and (``with_bytes``) the bytes of every artifact they produced or read."""
    ids = [src.metadata.runs.get(r).id for r in run_ids]      # full ids from prefixes; NotFound names a wrong one
    bundle = src.metadata.bundles.collect(run_ids=ids)
    return copy_bundle(src, dst, bundle, with_bytes=None if with_bytes else (), actor=actor, progress=progress)
