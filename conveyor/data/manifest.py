"""Manifests of file sets: one row per file with its size, fingerprint and content hash.

A file set is versioned by its manifest, never copied. Each file is read once: the next
registration of the same root reuses the hash of every file whose size and fingerprint (the
object store's ETag or generation, or the local modification time) are unchanged, so a set of a
million files whose files did not change costs one listing and no reads. The version's identity
is the hash of the sorted (relative path, size, file hash) triples: content alone, so touching a
file without changing it gives the same version. Files hash with SHA-256 (``hashlib``: OpenSSL,
several files at once), or with BLAKE3 when asked (``algorithm="blake3"``, the optional ``blake3``
wheel, itself multi-threaded); a file hash carries its algorithm's name (``sha256:…``), so a
manifest never reuses a hash of the other kind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ArtifactIntegrityError, InvalidRequest, NotFound

CHUNK_BYTES = 8 << 20
ALGORITHMS = ("sha256", "blake3")
BLAKE3_OWN_THREADS_BYTES = 16 << 20   # from this average file size BLAKE3 parallelises inside each file
_GLOB = set("*?[")
# what an object store's listing says about a file's bytes, most precise first
_FINGERPRINT_KEYS = ("ETag", "etag", "md5Hash", "generation", "content_settings", "mtime", "LastModified",
                     "last_modified", "updated", "created")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A file set as hashed now: ``table`` (path, size, fingerprint, hash), sorted by path."""

    root: str                 # the folder (as a URL) the paths are relative to
    table: Any                # pyarrow.Table
    content_hash: str
    hashed: int               # files read this time
    reused: int               # files whose hash came from the previous manifest
    first_hashed: str | None = None   # the first file read this time (full URL), to infer a schema from

    @property
    def size(self) -> int:
        import pyarrow.compute as pc

        return int(pc.sum(self.table.column("size")).as_py() or 0)


def fingerprint(info: dict[str, Any]) -> str:
    """A short text that changes when the file's bytes may have (never read from the bytes)."""
    for key in _FINGERPRINT_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            return f"{key}={value}"
    return ""


def open_files(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str, dict[str, dict]]:
    """The filesystem, the root folder (without scheme) and ``{path: info}`` of the files ``uri`` names.

    ``uri`` is a folder (every file below it), a glob, or one file, on any fsspec URL.
    """
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise InvalidRequest(f"Cannot open {uri!r}: {exc}. s3://, gs:// and az:// need s3fs, gcsfs or adlfs.",
                             field="uri") from None
    path = path.rstrip("/") or "/"
    fs.invalidate_cache()    # a listing cached earlier in this process would hide what changed since
    if _GLOB.intersection(path):
        found = fs.glob(path, detail=True)
        parts = path.split("/")
        root = "/".join(parts[:next(i for i, p in enumerate(parts) if _GLOB.intersection(p))]) or "/"
    elif fs.isdir(path):
        found, root = fs.find(path, detail=True), path
    elif fs.exists(path):
        found, root = {path: fs.info(path)}, path.rsplit("/", 1)[0] or "/"
    else:
        raise NotFound(f"Nothing at {uri}: no file, folder or matching glob. Check the path (and credentials for "
                       "an object store).")
    files = {p: i for p, i in found.items() if i.get("type", "file") == "file"}
    if not files:
        raise NotFound(f"No files under {uri}. A dataset of files needs at least one.")
    return fs, root, files


def _hasher(algorithm: str, threads: bool) -> Any:
    if algorithm == "sha256":
        return hashlib.sha256()
    try:
        import blake3
    except ImportError:
        raise InvalidRequest("algorithm='blake3' needs the blake3 package: pip install 'conveyor[blake3]', or "
                             "use the default algorithm='sha256'.", field="algorithm") from None
    return blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)


def _is_local(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols and type(fs).__name__ == "LocalFileSystem"


def _file_hash(fs: Any, path: str, algorithm: str, threads: bool, on_bytes: Callable[[int], None] | None) -> str:
    h = _hasher(algorithm, threads)
    if algorithm == "blake3" and _is_local(fs):
        h.update_mmap(path)          # no copy through Python; the hasher's own threads read the map
        if on_bytes is not None:
            on_bytes(os.path.getsize(path))
        return f"{algorithm}:{h.hexdigest()}"
    with fs.open(path, "rb", block_size=CHUNK_BYTES) as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)          # releases the GIL: several files hash at once on several cores
            if on_bytes is not None:
                on_bytes(len(chunk))
    return f"{algorithm}:{h.hexdigest()}"


def build_manifest(uri: str, *, previous: Any = None, storage_options: dict[str, Any] | None = None,
                   threads: int | None = None, progress: bool | None = None, algorithm: str = "sha256") -> Manifest:
    """Hash the files ``uri`` names, reusing ``previous`` (an earlier manifest of the same root) where
    a file's size and fingerprint did not change."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if algorithm not in ALGORITHMS:
        raise InvalidRequest(f"Unknown hash algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}.",
                             field="algorithm")
    fs, root, files = open_files(uri, storage_options)
    prefix = root.rstrip("/") + "/"
    paths = sorted(files)
    rel = pa.array([p[len(prefix):] if p.startswith(prefix) else p.rsplit("/", 1)[-1] for p in paths], pa.string())
    sizes = pa.array([int(files[p].get("size") or 0) for p in paths], pa.int64())
    prints = pa.array([fingerprint(files[p]) for p in paths], pa.string())
    hashes = np.full(len(paths), None, dtype=object)
    same_root = previous is not None and (previous.schema.metadata or {}).get(b"root", b"").decode() == \
        fs.unstrip_protocol(root)
    if same_root:
        at = pc.index_in(rel, value_set=previous.column("path"))
        found = np.asarray(at.is_valid())
        idx = np.asarray(at.fill_null(0))
        same = found & (np.asarray(previous.column("size"))[idx] == np.asarray(sizes)) & \
            (np.asarray(previous.column("fingerprint"), dtype=object)[idx] == np.asarray(prints, dtype=object)) & \
            np.asarray(pc.starts_with(previous.column("hash"), f"{algorithm}:"))[idx]
        hashes[same] = np.asarray(previous.column("hash"), dtype=object)[idx[same]]
    todo = [i for i in np.flatnonzero(hashes == None)]  # noqa: E711 (elementwise)
    _hash_files(fs, [paths[i] for i in todo], hashes, todo, threads, progress, algorithm,
                total_bytes=int(np.asarray(sizes)[todo].sum()) if todo else 0)
    table = pa.table({"path": rel, "size": sizes, "fingerprint": prints, "hash": pa.array(list(hashes), pa.string())},
                     metadata={"root": fs.unstrip_protocol(root)})
    return Manifest(fs.unstrip_protocol(root), table, identity(table), hashed=len(todo),
                    reused=len(paths) - len(todo), first_hashed=fs.unstrip_protocol(paths[todo[0]]) if todo else None)


def _hash_files(fs: Any, paths: list[str], out: Any, slots: list[int], threads: int | None,
                progress: bool | None, algorithm: str, total_bytes: int) -> None:
    if not paths:
        return
    workers = threads or min(16, (os.cpu_count() or 1) * 2)
    # BLAKE3 hashes one big file on every core by itself: then files go one at a time
    inner = algorithm == "blake3" and total_bytes / len(paths) >= BLAKE3_OWN_THREADS_BYTES
    if inner and threads is None:
        workers = 1
    show = progress if progress is not None else (len(paths) > 100 and _stderr_is_terminal())
    bar: Any = None
    if show:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task(f"hashing {len(paths)} files", total=total_bytes)
        bar.start()

    def one(path: str) -> str:
        try:
            return _file_hash(fs, path, algorithm, inner or len(paths) < workers,
                              (lambda n: bar.advance(task, n)) if bar is not None else None)
        except (OSError, ValueError) as exc:
            raise ArtifactIntegrityError(f"Cannot read {fs.unstrip_protocol(path)} to version it: {exc}. Nothing "
                                         "was registered; fix the file's access and register again.") from None

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for slot, digest in zip(slots, pool.map(one, paths), strict=True):
                out[slot] = digest
    finally:
        if bar is not None:
            bar.stop()


def _stderr_is_terminal() -> bool:
    import sys

    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def identity(table: Any) -> str:
    """``sha256:`` of the sorted (path, size, hash) lines: the file set's content, nothing else."""
    import pyarrow.compute as pc

    lines = pc.binary_join_element_wise(table.column("path"), pc.cast(table.column("size"), "string"),
                                        table.column("hash"), "\t")
    h = hashlib.sha256()
    for chunk in lines.chunks:
        h.update("\n".join(chunk.to_pylist()).encode())
        h.update(b"\n")
    return f"sha256:{h.hexdigest()}"


def check_unchanged(manifest: Any, storage_options: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """The filesystem and full paths of a manifest's files, after checking by listing (no reads) that
    none was changed or removed since it was registered."""
    import fsspec
    import numpy as np

    root = (manifest.schema.metadata or {}).get(b"root", b"").decode()
    fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
    base = base.rstrip("/")
    fs.invalidate_cache()
    listed = fs.find(base, detail=True) if fs.isdir(base) else {}
    paths = [f"{base}/{p}" for p in manifest.column("path").to_pylist()]
    sizes = np.asarray(manifest.column("size"))
    prints = manifest.column("fingerprint").to_pylist()
    changed = [p for p, s, f in zip(paths, sizes, prints, strict=True)
               if p not in listed or int(listed[p].get("size") or 0) != s or fingerprint(listed[p]) != f]
    if changed:
        raise ArtifactIntegrityError(
            f"{len(changed)} of the {len(paths)} files of this dataset version changed or vanished under {root} since "
            f"it was registered (first: {fs.unstrip_protocol(changed[0])}). Register the files again for a new "
            "version, or restore them.")
    return fs, paths
