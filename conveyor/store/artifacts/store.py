"""The content-addressed artifact store on any fsspec filesystem.

Layout: ``<root>/objects/<hash[:2]>/<hash>``. Bytes are hashed while they are staged (a temporary
file, or memory before one upload on an object store: ``staging.py``), then placed under their
hash; an object that already exists is kept (deduplication).
Reads load the bytes once, check the hash, and only then deserialise. On a remote store, transient
errors are retried with backoff (``retry.py``); every library error leaves as an ``ArtifactError``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from conveyor.errors import (ArtifactError, ArtifactIntegrityError, ArtifactUntrusted, ConveyorError)
from conveyor.store.artifacts.hashing import ALGORITHM, HashingWriter, canonical_json, digest
from conveyor.store.artifacts.materializers import MaterializerRegistry
from conveyor.store.artifacts.materializers import registry as default_materializers
from conveyor.store.artifacts.materializers.json_value import JsonMaterializer, is_plain_json
from conveyor.store.artifacts.retry import RetryPolicy, from_backend, translated, with_retries
from conveyor.store.artifacts.staging import CHUNK_BYTES, StagedObject
from conveyor.store.artifacts.tally import add_read, add_written

log = logging.getLogger("conveyor.artifacts")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """Where and how a value is stored; everything needed to read it back and verify it."""

    content_hash: str
    materializer: str
    materializer_version: str
    type_name: str
    size: int
    uri: str | None
    inline: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


def _type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


class ArtifactStore:
    """Stores values by content under ``root`` (a path or any fsspec URL)."""

    def __init__(self, root: str, *, materializers: MaterializerRegistry | None = None,
                 inline_max_bytes: int = 65536, storage_options: dict[str, Any] | None = None,
                 allow_pickle: str | None = None, retry: RetryPolicy | None = None) -> None:
        import fsspec

        self.root = root
        self._allow_pickle = allow_pickle      # local | true | false; None: CONVEYOR_ALLOW_PICKLE
        self.retry = retry or RetryPolicy()
        self.materializers = materializers or default_materializers
        self.inline_max_bytes = inline_max_bytes
        try:
            self.fs, self._base = fsspec.core.url_to_fs(root, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise ArtifactError(f"Cannot open artifact root {root!r}: {exc}. Check CONVEYOR_ARTIFACT_ROOT "
                                "(s3://, gs:// and az:// need s3fs, gcsfs or adlfs installed).") from None
        self._base = self._base.rstrip("/")
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self._made: set[str] = set()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # --- paths --------------------------------------------------------------------------------

    def _object_path(self, content_hash: str) -> str:
        hexpart = content_hash.split(":", 1)[-1]
        return f"{self._base}/objects/{hexpart[:2]}/{hexpart}"

    @property
    def base(self) -> str:
        """The root's path on its filesystem, without the scheme (what ``fs`` lists)."""
        return self._base

    def object_path(self, content_hash: str) -> str:
        """Where the object of ``content_hash`` lives on this store's filesystem (without the scheme)."""
        return self._object_path(content_hash)

    def _mkdir(self, path: str) -> None:
        if path not in self._made:
            self.fs.makedirs(path, exist_ok=True)
            self._made.add(path)

    def uri_of(self, path: str) -> str:
        return self.fs.unstrip_protocol(path)

    # --- writing ------------------------------------------------------------------------------

    def materializer_for(self, value: Any) -> Any:
        """The materializer that would store ``value``."""
        return self.materializers.for_value(value)

    def put(self, value: Any, *, materializer: str | None = None) -> StoredArtifact:
        """Store a value (inline when it is small plain JSON) and describe where it went."""
        if materializer is None and is_plain_json(value):
            data = canonical_json(value)
            if len(data) <= self.inline_max_bytes:
                add_written(len(data))   # an inline value is written with the step's record
                return StoredArtifact(content_hash=digest(data), materializer="json",
                                      materializer_version=JsonMaterializer.version,
                                      type_name=_type_name(value), size=len(data), uri=None, inline=value,
                                      meta={"kind": type(value).__name__})
        m = self.materializers.get(materializer) if materializer else self.materializers.for_value(value)
        return self._write(value, m)

    def put_file(self, path: str | os.PathLike[str]) -> StoredArtifact:
        """Store a file or a folder as it is now."""
        p = Path(path)
        if not p.exists():
            raise ArtifactError(f"Cannot store {p}: it does not exist.")
        return self._write(p, self.materializers.get("path"))

    def _write(self, value: Any, m: Any) -> StoredArtifact:
        return self._io(lambda: self._write_once(value, m), "writing an artifact", self.root)

    def _write_once(self, value: Any, m: Any) -> StoredArtifact:
        # The bytes are staged (staging.py) and placed under their hash only once complete, so a
        # crash at any moment leaves either no object or a whole one; a metadata record is written
        # only after this returns, so it never points at a partial object.
        staged = self._stage()
        try:
            writer = HashingWriter(staged)
            meta = m.save(value, writer) or {}
            final = self._object_path(writer.content_hash)
            staged.place(final, writer.size)
            add_written(writer.size)
        except BaseException:
            staged.discard()
            raise
        if m.trusted_only and not hasattr(m, "runs_code"):
            meta = {**meta, "trusted_only": True}
        return StoredArtifact(content_hash=writer.content_hash, materializer=m.name, materializer_version=m.version,
                              type_name=_type_name(value), size=writer.size, uri=self.uri_of(final), meta=meta)

    # --- moving objects between stores (see transfer.py) ---------------------------------------

    def relocated(self, stored: StoredArtifact) -> StoredArtifact:
        """The same artifact as this store names it: only the URI changes (inline values have none)."""
        if stored.uri is None:
            return stored
        return replace(stored, uri=self.uri_of(self._object_path(stored.content_hash)))

    def open_object(self, stored: StoredArtifact, *, block_size: int = CHUNK_BYTES) -> BinaryIO:
        """A binary file reading the stored bytes as they are (not verified: the reader hashes them)."""
        path = self._object_path(stored.content_hash)
        where = stored.uri or self.uri_of(path)

        def opened() -> BinaryIO | None:
            try:
                return self.fs.open(path, "rb", block_size=block_size)
            except FileNotFoundError:
                return None

        fh = self._io(opened, "opening an artifact", where)
        if fh is None:
            raise ArtifactIntegrityError(
                f"Artifact {where} is missing from the store {self.root}. Re-run the step that produced it with "
                "--no-cache, or copy it from a store that has it.")
        return fh

    def holds(self, stored: StoredArtifact, *, verify: bool = True) -> bool:
        """True when this store has the whole object of ``stored`` under its final name.

        With ``verify`` the bytes are read and hashed (a damaged copy counts as absent); without it,
        a matching size is enough, the rule ``put`` deduplicates by.
        """
        if stored.uri is None:
            return True
        path = self._object_path(stored.content_hash)

        def look() -> bool:
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                return False
            if size != stored.size:
                return False
            if not verify:
                return True
            h = hashlib.sha256()
            with self.fs.open(path, "rb", block_size=CHUNK_BYTES) as fh:
                while chunk := fh.read(CHUNK_BYTES):
                    h.update(chunk)
            return f"{ALGORITHM}:{h.hexdigest()}" == stored.content_hash

        return self._io(look, "checking an artifact", self.uri_of(path))

    def ingest(self, source: BinaryIO, stored: StoredArtifact, *, where: str,
               on_bytes: Callable[[int], None] | None = None) -> StoredArtifact:
        """Write the object of ``stored`` from ``source``, streamed, and return it as this store names it.

        The bytes are hashed while they are written to a temporary name; only when they hash to
        ``stored.content_hash`` (and have its size) are they moved under their final name, so a
        corrupted source or an interrupted copy never leaves a wrong or partial object there.
        ``where`` names the source in the error; ``on_bytes`` hears of each chunk written.
        """
        staged = self._stage()
        try:
            writer = HashingWriter(staged)
            while chunk := source.read(CHUNK_BYTES):
                writer.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            if writer.content_hash != stored.content_hash or writer.size != stored.size:
                raise ArtifactIntegrityError(
                    f"Artifact {where} is corrupted or was changed: expected {stored.content_hash} ({stored.size} "
                    f"bytes), found {writer.content_hash} ({writer.size} bytes). It was not copied to {self.root}. "
                    "Re-run the step that produced it with --no-cache, then copy again.")
            # replace: the caller copies because what is there (if anything) is not intact
            staged.place(self._object_path(stored.content_hash), writer.size, replace=True)
        except BaseException:
            staged.discard()
            raise
        return self.relocated(stored)

    def _stage(self) -> StagedObject:
        return StagedObject(self.fs, self._base, local=self._local, mkdir=self._mkdir)

    def _io(self, fn: Callable[[], T], what: str, where: str) -> T:
        return self.guarded(fn, what, where)

    @property
    def is_local(self) -> bool:
        """True when the root is a folder on this machine (its errors are never retried)."""
        return self._local

    def guarded(self, fn: Callable[[], T], what: str, where: str, *, remote: bool | None = None) -> T:
        """Run one store operation: transient remote errors are retried, library errors translated.

        ``remote`` says whether a remote store takes part (default: whether this root is remote).
        """
        try:
            return with_retries(self.retry, fn, remote=not self._local if remote is None else remote, what=what,
                                where=where)
        except ConveyorError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) or from_backend(exc):
                raise translated(exc, what=what, where=where, root=self.root) from None
            raise

    # --- documents: small named files beside the objects (run records, the shared cache index) -

    def write_document(self, name: str, data: bytes) -> None:
        """Write ``<root>/<name>`` whole: readers see the old or the new bytes, never a part."""
        path = f"{self._base}/{name}"

        def write() -> None:
            self._mkdir(path.rsplit("/", 1)[0])
            if self._local:
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            else:
                self.fs.pipe_file(path, data)   # an object store's put is atomic

        self._io(write, "writing a record", self.uri_of(path))

    def read_document(self, name: str) -> bytes | None:
        """The bytes of ``<root>/<name>``, or None when there is none."""
        path = f"{self._base}/{name}"

        def read() -> bytes | None:
            try:
                return self.fs.cat_file(path)
            except FileNotFoundError:
                return None

        return self._io(read, "reading a record", self.uri_of(path))

    def list_documents(self, folder: str) -> list[str]:
        """Names (relative to the root) of the documents directly under ``<root>/<folder>``."""
        path = f"{self._base}/{folder}"

        def listing() -> list[str]:
            try:
                self.fs.invalidate_cache(path)   # other machines write here: never answer from a listing cache
                found = self.fs.ls(path, detail=False)
            except FileNotFoundError:
                return []
            return sorted(f"{folder}/{str(p).rstrip('/').rsplit('/', 1)[-1]}" for p in found
                          if not str(p).endswith(".tmp"))

        return self._io(listing, "listing records", self.uri_of(path))

    # --- reading ------------------------------------------------------------------------------

    def read_verified(self, stored: StoredArtifact) -> bytes:
        """The stored bytes, after checking they hash to what the metadata recorded."""
        path = self._object_path(stored.content_hash)
        where = stored.uri or self.uri_of(path)

        def fetch() -> bytes | None:
            try:
                return self.fs.cat_file(path)
            except FileNotFoundError:
                return None

        data = self._io(fetch, "reading an artifact", where)
        add_read(len(data) if data is not None else 0)
        if data is None:
            raise ArtifactIntegrityError(
                f"Artifact {where} is missing from the store. Re-run the step that produced it with --no-cache.")
        actual = digest(data)
        if actual != stored.content_hash:
            raise ArtifactIntegrityError(
                f"Artifact {where} is corrupted or was changed: expected {stored.content_hash}, found {actual} "
                f"({len(data)} bytes, {stored.size} recorded). It was not loaded. Re-run the step that produced it "
                "with --no-cache to write it again.")
        return data

    def exists(self, stored: StoredArtifact) -> bool:
        """True when the bytes of ``stored`` are in the store (inline values always are).

        Cheap (one metadata call, no read): a resume or a cache hit asks it before reusing an output,
        so bytes lost with a wiped bucket or disk are recomputed instead of failing a later step.
        Bytes that are present but damaged are not looked at here: reading them fails loudly.
        """
        if stored.uri is None:
            return True
        path = self._object_path(stored.content_hash)
        return self._io(lambda: bool(self.fs.exists(path)), "looking up an artifact", stored.uri)

    def get(self, stored: StoredArtifact) -> Any:
        """The value, rebuilt only after its bytes were verified."""
        if stored.uri is None:
            return stored.inline
        data = self.read_verified(stored)     # never deserialise bytes that do not match the recorded hash
        m = self.materializers.get(stored.materializer)
        meta = stored.meta or {}
        if m.trusted_only:
            self._check_trusted(m, data, meta, stored)
        return m.load(data, meta)

    def read_loadable(self, stored: StoredArtifact) -> bytes:
        """The verified bytes of an artifact this store's settings allow loading, checked as ``get`` checks
        them, for loading in another process (a cluster worker) that knows neither this store nor its settings."""
        if stored.uri is None:
            raise ArtifactError(f"Artifact {stored.content_hash} is an inline value and has no bytes to ship.")
        data = self.read_verified(stored)
        m = self.materializers.get(stored.materializer)
        if m.trusted_only:
            self._check_trusted(m, data, stored.meta or {}, stored)
        return data

    def code_allowed(self) -> bool:
        """Whether artifacts whose loading runs code (pickle, joblib) may be loaded from this store."""
        policy = self._allow_pickle
        if policy is None:
            from conveyor.config import load_settings

            policy = self._allow_pickle = load_settings().allow_pickle
        if policy == "local":
            return self._on_this_machine()
        return policy == "true"

    def _on_this_machine(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return bool({"file", "local", "memory"}.intersection(protocols))

    def _check_trusted(self, m: Any, data: bytes, meta: dict[str, Any], stored: StoredArtifact) -> None:
        """Refuse to load an artifact whose loading would run code, unless the settings allow it."""
        # A materializer that can tell (skops with allow-listed types only) says so per artifact; the
        # metadata's own claims are not trusted, since whoever can swap the bytes can swap those too.
        reason = m.runs_code(data, meta) if hasattr(m, "runs_code") else f"it was stored with {m.name}"
        if not reason:
            return
        where = stored.uri or self.root
        if not self.code_allowed():
            raise ArtifactUntrusted(
                f"Artifact {where} ({stored.type_name}) was not loaded: loading it would run code from the artifact "
                f"({reason}), and CONVEYOR_ALLOW_PICKLE does not allow that for {self.root}. Set "
                "CONVEYOR_ALLOW_PICKLE=true only if you trust everyone who can write this store, or store such "
                "values with a materializer that does not pickle.")
        # a local root is the user's own disk; a shared one opened by CONVEYOR_ALLOW_PICKLE=true deserves a word
        log.log(logging.DEBUG if self._on_this_machine() else logging.WARNING,
                "loading %s (%s) runs code from the artifact (%s); allowed by CONVEYOR_ALLOW_PICKLE", where,
                stored.type_name, reason)

    def verify(self, stored: StoredArtifact) -> None:
        """Raise ArtifactIntegrityError unless the stored bytes match the recorded hash."""
        if stored.uri is not None:
            self.read_verified(stored)
        elif digest(canonical_json(stored.inline)) != stored.content_hash:
            raise ArtifactIntegrityError("An inline artifact does not match its recorded hash.")

    def export(self, stored: StoredArtifact, dest: str | os.PathLike[str]) -> Path:
        """Write an artifact to ``dest``: JSON for inline values, the file or folder for paths, else raw bytes."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if stored.uri is None:
            target.write_bytes(canonical_json(stored.inline))
            return target
        data = self.read_verified(stored)
        if stored.materializer == "path" and (stored.meta or {}).get("kind") == "folder":
            from conveyor.store.artifacts.materializers.path_value import extract_folder

            extract_folder(data, target)
            return target
        target.write_bytes(data)
        return target
