"""Copying artifacts from one artifact store to another: streamed, verified on arrival, resumable.

``transfer(src, dst, items)`` moves the bytes of each ``StoredArtifact`` (as the metadata of
``src`` describes it) into ``dst`` under the same content hash, whatever the two filesystems are
(a local folder, S3, GCS, Azure Blob):

- streamed: an object is read and written in chunks of ``CHUNK_BYTES``; a big one is never held
  whole in memory (on an object store, one up to ``IN_MEMORY_MAX_BYTES`` is uploaded in one
  request once verified: see staging.py);
- verified on arrival: the bytes are hashed while ``dst`` writes them to a temporary name and
  only moved under their final name when they match the recorded hash, so a corrupted source
  object is refused (``ArtifactIntegrityError``) and never becomes visible at the destination;
- resumable: an object already whole at the destination is skipped, and an interrupted copy
  leaves at most a temporary file (never referenced, removed on the way out when possible), so
  running the same transfer again copies only what is missing.

Inline values (small JSON kept in the metadata) have no bytes to move; they are counted apart.
Transient errors of either store are retried per object with the destination's retry policy.
Copying the metadata records that describe the artifacts is the caller's job (see
``conveyor/store/copy.py``), and must happen after ``transfer`` returns, so that no record ever
points at bytes that are not there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.store.artifacts.store import ArtifactStore, StoredArtifact

# Below this many bytes a copy is quick enough that a progress bar would only flicker.
PROGRESS_MIN_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What a transfer did: objects copied and skipped (already whole there), and their bytes."""

    copied: int = 0
    skipped: int = 0
    inline: int = 0
    bytes_copied: int = 0
    bytes_skipped: int = 0
    # content hash -> the artifact as the destination names it (its URI on the destination)
    artifacts: dict[str, StoredArtifact] = field(default_factory=dict)

    def to_dict(self) -> dict[str, int]:
        """The counts, for JSON output."""
        return {"copied": self.copied, "skipped": self.skipped, "inline": self.inline,
                "bytes_copied": self.bytes_copied, "bytes_skipped": self.bytes_skipped}


class TransferProgress(Protocol):
    """Hears how a transfer goes (a progress bar, a log, a test that interrupts it)."""

    def start(self, objects: int, total_bytes: int) -> None:
        """Called once, before the first object."""
        ...

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more were handled (negative when a retried object starts over)."""
        ...

    def finished(self, stored: StoredArtifact, copied: bool) -> None:
        """One object is whole at the destination (``copied`` False: it already was)."""
        ...

    def close(self) -> None:
        """Called once at the end, also after an error."""
        ...


class RichProgress:
    """A rich progress bar on stderr: bytes, speed, time left, objects done."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._progress = Progress(TextColumn("[bold]copying[/] {task.fields[objects]}"), BarColumn(),
                                  DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=False)
        self._task: Any = None
        self._done = 0
        self._total = 0

    def start(self, objects: int, total_bytes: int) -> None:
        self._total = objects
        self._progress.start()
        self._task = self._progress.add_task("copy", total=total_bytes, objects=f"0/{objects}")

    def advance(self, nbytes: int) -> None:
        self._progress.update(self._task, advance=nbytes)

    def finished(self, stored: StoredArtifact, copied: bool) -> None:
        self._done += 1
        if not copied:
            self._progress.update(self._task, advance=stored.size)
        self._progress.update(self._task, objects=f"{self._done}/{self._total}")

    def close(self) -> None:
        self._progress.stop()


def _progress_for(progress: bool | TransferProgress | None, total_bytes: int) -> TransferProgress | None:
    if progress is None:
        progress = total_bytes >= PROGRESS_MIN_BYTES and sys.stderr.isatty()
    if progress is True:
        return RichProgress()
    return progress or None


def transfer(src: ArtifactStore, dst: ArtifactStore, items: Iterable[StoredArtifact], *,
             progress: bool | TransferProgress | None = None, verify_existing: bool = True) -> TransferReport:
    """Copy the bytes of ``items`` from ``src`` to ``dst``; returns what was copied and skipped.

    ``items`` are artifacts as ``src``'s metadata records them (duplicates are copied once).
    ``progress``: None shows a rich bar on a terminal for copies of 64 MiB or more, True always,
    False never, or pass a ``TransferProgress``. ``verify_existing`` hashes an object already at
    the destination before skipping it (False trusts a matching size, as ``put`` does). Raises
    ``ArtifactIntegrityError`` for a source object that is missing or does not match its hash;
    the objects copied before it stay (they are whole), and a second call resumes from there.
    """
    unique: dict[str, StoredArtifact] = {}
    inline = 0
    for stored in items:
        if stored.uri is None:
            inline += 1
        else:
            unique.setdefault(stored.content_hash, stored)
    total = sum(s.size for s in unique.values())
    bar = _progress_for(progress, total)
    copied = skipped = bytes_copied = bytes_skipped = 0
    placed: dict[str, StoredArtifact] = {}
    remote = not (src.is_local and dst.is_local)
    try:
        if bar is not None:
            bar.start(len(unique), total)
        for content_hash, stored in unique.items():
            if dst.holds(stored, verify=verify_existing):
                placed[content_hash] = dst.relocated(stored)
                skipped += 1
                bytes_skipped += stored.size
                if bar is not None:
                    bar.finished(stored, copied=False)
                continue
            placed[content_hash] = _copy_one(src, dst, stored, bar, remote=remote)
            copied += 1
            bytes_copied += stored.size
            if bar is not None:
                bar.finished(stored, copied=True)
    finally:
        if bar is not None:
            bar.close()
    return TransferReport(copied=copied, skipped=skipped, inline=inline, bytes_copied=bytes_copied,
                          bytes_skipped=bytes_skipped, artifacts=placed)


def _copy_one(src: ArtifactStore, dst: ArtifactStore, stored: StoredArtifact, bar: TransferProgress | None, *,
              remote: bool) -> StoredArtifact:
    where = stored.uri or src.uri_of(src.object_path(stored.content_hash))
    done = [0]

    def counted(nbytes: int) -> None:
        done[0] += nbytes
        if bar is not None:
            bar.advance(nbytes)

    def attempt() -> StoredArtifact:
        if done[0] and bar is not None:        # a retry starts the object over
            bar.advance(-done[0])
        done[0] = 0
        with src.open_object(stored) as source:
            return dst.ingest(source, stored, where=where, on_bytes=counted)

    return dst.guarded(attempt, "copying an artifact", f"{where} -> {dst.root}", remote=remote)
