"""Versioned datasets: ``cv.data.register_dataset``, ``cv.data.load_dataset`` and the ``dataset`` source.

A version is identified by its content. A table (Arrow, pandas, or any source's rows) is written
once to the artifact store as Arrow IPC, hashed while it is written; a set of files is described
by a manifest of per-file hashes (``manifest.py``) and left where it is. Registering the same
content again returns the same version. Each version keeps its schema, row count, a profile (the
monitoring statistics the diff compares) and its lineage: the run that produced it and every run
that read it. ``customers``, ``customers:3`` and ``customers@train`` resolve wherever data is read,
including ``cv.data.read("dataset://customers@train")``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from conveyor.data.dataset_refs import DatasetRef, check_dataset_alias, check_dataset_name, parse_dataset_ref
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.store.metadata.records import NewArtifact

TABULAR = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json",
           ".json": "json", ".arrow": "ipc", ".feather": "ipc", ".ipc": "ipc"}
#: a tabular file set up to this many files is read at registration for its row count and profile
PROFILE_MAX_FILES = 1000


@dataclass(frozen=True, slots=True)
class Reader:
    """Who is reading: the run and step run a read is recorded against (both None outside a run)."""

    run_id: str | None = None
    step_run_id: str | None = None


def _canonical_table(data: Any) -> tuple[Any, str | None]:
    """An Arrow table whose IPC bytes depend only on its content, and where it came from."""
    import pyarrow as pa

    described = None
    if hasattr(data, "read") and hasattr(data, "describe") and not isinstance(data, pa.Table):
        described, data = data.describe(), data.read()        # any conveyor.data source
    if isinstance(data, pa.RecordBatchReader):
        data = data.read_all()
    elif isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table):
        from conveyor.monitoring.profile import to_arrow

        frame = type(data).__name__ == "DataFrame"
        data = to_arrow(data)
        if frame:   # the pandas metadata names the pandas version: the same rows must hash alike under any
            data = data.replace_schema_metadata({k: v for k, v in (data.schema.metadata or {}).items()
                                                 if k != b"pandas"} or None)
    if any(col.num_chunks > 1 for col in data.columns):
        data = data.combine_chunks()   # batch boundaries are written into the bytes: make them canonical
    return data, described


def _schema(schema: Any) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def _profile(table: Any) -> dict[str, Any]:
    import pyarrow as pa

    from conveyor.monitoring.profile import Profile

    keep = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
            or pa.types.is_decimal(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_boolean(f.type) or pa.types.is_dictionary(f.type)]
    return Profile.from_data(table.select(keep)).to_dict()


def _file_format(paths: list[str]) -> str | None:
    formats = {TABULAR.get(os.path.splitext(p)[1].lower()) for p in paths}
    return formats.pop() if len(formats) == 1 and None not in formats else None


class DatasetCatalog:
    """Dataset versions over one metadata store and artifact store, acting as ``actor``."""

    def __init__(self, metadata: Any, artifacts: Any, actor: str) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.actor = actor
        self.rows = metadata.datasets

    # --- registering --------------------------------------------------------------------------

    def register(self, name: str, data: Any, *, alias: str | None = None, profile: bool | None = None,
                 storage_options: dict[str, Any] | None = None, run_id: str | None = None,
                 step_run_id: str | None = None, threads: int | None = None, algorithm: str = "sha256") -> Any:
        """Register ``data`` (a table, DataFrame, source, or a URI of files) as a version of ``name``.

        Returns the version (a ``DatasetVersionRecord``): a new one, or the existing one with the same
        content. ``alias`` is moved to it. ``algorithm`` hashes a file set's files (``sha256`` or
        ``blake3``; the same files under the two are two versions). Everything is checked and
        written before one transaction records it, so a failure registers nothing.
        """
        check_dataset_name(name)
        if alias is not None:
            check_dataset_alias(alias)
        if isinstance(data, str) and data.startswith("dataset://"):
            data = self.load(data)            # another dataset's version, registered here as a table
        if isinstance(data, str | PurePath):
            new = self._files_version(name, str(data), profile, storage_options, threads, algorithm)
        else:
            new = self._table_version(name, data, profile)
        for attempt in range(3):
            try:
                record, _ = self.rows.add_version(new, actor=self.actor, run_id=run_id, step_run_id=step_run_id,
                                                  alias=alias)
                return record
            except Conflict:
                # another process registered this content or took this number first; the transaction
                # left nothing, and the next attempt finds its version or takes the next number
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _new_artifact(self, stored: Any, label: str) -> NewArtifact:
        return NewArtifact(name=label, content_hash=stored.content_hash, materializer=stored.materializer,
                           materializer_version=stored.materializer_version, type_name=stored.type_name,
                           size=stored.size, uri=stored.uri, inline=stored.inline, meta=stored.meta)

    def _table_version(self, name: str, data: Any, profile: bool | None) -> Any:
        from conveyor.store.metadata.datasets import NewDatasetVersion

        table, described = _canonical_table(data)
        stored = self.artifacts.put(table, materializer="arrow.ipc")
        prof = None
        if profile is not False and self.rows.by_content(name, stored.content_hash) is None:
            prof = self._new_artifact(self.artifacts.put(_profile(table)), f"dataset-profile/{name}")
        return NewDatasetVersion(dataset=name, content_hash=stored.content_hash, kind="table",
                                 artifacts=[self._new_artifact(stored, f"dataset/{name}")], profile=prof,
                                 schema=_schema(table.schema), num_rows=table.num_rows, num_files=None,
                                 size=stored.size, source=described)

    def _files_version(self, name: str, uri: str, profile: bool | None, storage_options: dict[str, Any] | None,
                       threads: int | None, algorithm: str) -> Any:
        from conveyor.data.manifest import build_manifest
        from conveyor.store.metadata.datasets import NewDatasetVersion

        previous = self.rows.latest_of_kind(name, "files") if self.rows.exists(name) else None
        before = self._load_artifact(previous.artifact_id) if previous is not None else None
        manifest = build_manifest(uri, previous=before, storage_options=storage_options, threads=threads,
                                  algorithm=algorithm)
        same = self.rows.by_content(name, manifest.content_hash)
        if same is not None:    # nothing new: the version exists, and no file needs opening for its schema
            return NewDatasetVersion(dataset=name, content_hash=same.content_hash, kind="files", artifacts=[],
                                     profile=None, schema=same.schema, num_rows=same.num_rows,
                                     num_files=same.num_files, size=same.size, source=same.source)
        paths = manifest.table.column("path").to_pylist()
        fmt = _file_format(paths)
        schema, rows, prof = [], None, None
        if fmt is not None:
            if profile is True or (profile is None and len(paths) <= PROFILE_MAX_FILES):
                table = self._file_dataset(manifest.table, fmt, storage_options).to_table()
                rows = table.num_rows
                schema = _schema(table.schema)
                prof = self._new_artifact(self.artifacts.put(_profile(table)), f"dataset-profile/{name}")
            elif manifest.first_hashed is None and previous is not None and previous.schema:
                schema = previous.schema      # only removals: the files left were read before
            else:                             # one footer, of a file read for hashing anyway
                schema = _schema(self._one_file_schema(manifest.first_hashed or uri, fmt, storage_options))
        stored = self.artifacts.put(manifest.table, materializer="arrow.ipc")
        return NewDatasetVersion(dataset=name, content_hash=manifest.content_hash, kind="files",
                                 artifacts=[self._new_artifact(stored, f"dataset-manifest/{name}")], profile=prof,
                                 schema=schema, num_rows=rows, num_files=len(paths), size=manifest.size,
                                 source=manifest.root)

    @staticmethod
    def _one_file_schema(url: str, fmt: str, storage_options: dict[str, Any] | None) -> Any:
        import fsspec
        import pyarrow.dataset as ds

        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        first = path if fs.isfile(path) else sorted(fs.find(path))[0]
        return ds.dataset([first], filesystem=fs, format=fmt).schema

    @staticmethod
    def _file_dataset(manifest: Any, fmt: str, storage_options: dict[str, Any] | None, *,
                      check: bool = False) -> Any:
        import fsspec
        import pyarrow.dataset as ds

        from conveyor.data.manifest import check_unchanged

        if check:
            fs, paths = check_unchanged(manifest, storage_options)
        else:
            root = (manifest.schema.metadata or {}).get(b"root", b"").decode()
            fs, base = fsspec.core.url_to_fs(root, **(storage_options or {}))
            paths = [f"{base.rstrip('/')}/{p}" for p in manifest.column("path").to_pylist()]
        return ds.dataset(paths, filesystem=fs, format=fmt)

    # --- resolving and reading ----------------------------------------------------------------

    def resolve(self, ref: str | DatasetRef) -> Any:
        """The version a reference names (``name`` alone: the latest)."""
        r = parse_dataset_ref(ref)
        if not self.rows.exists(r.name):
            known = self.rows.names()
            raise NotFound(f"No dataset '{r.name}'. Registered datasets: {', '.join(known) or '(none)'}. Register "
                           f"one with cv.data.register_dataset('{r.name}', table).")
        number = r.version
        if r.alias is not None:
            aliases = self.rows.aliases(r.name)
            if r.alias not in aliases:
                raise NotFound(f"Dataset '{r.name}' has no alias '{r.alias}'. Its aliases: "
                               f"{', '.join(f'{a}→{v}' for a, v in sorted(aliases.items())) or '(none)'}; set one "
                               f"with `conveyor datasets alias {r.name}:VERSION {r.alias}`.")
            number = aliases[r.alias]
        if number is None:
            number = self.rows.latest(r.name)
        found = self.rows.version(r.name, number) if number is not None else None
        if found is None:
            raise NotFound(f"Dataset '{r.name}' has no version {number}; its latest is {self.rows.latest(r.name)}. "
                           f"See `conveyor datasets show {r.name}`.")
        return found

    def _load_artifact(self, artifact_id: str) -> Any:
        from conveyor.runtime.slots import stored_from_record

        return self.artifacts.get(stored_from_record(self.metadata.artifacts.get(artifact_id)))

    def manifest(self, ref: str | DatasetRef) -> Any:
        """The manifest (path, size, fingerprint, hash) of a file-set version."""
        version = self.resolve(ref)
        if version.kind != "files":
            raise InvalidRequest(f"Dataset version {version.ref} is a table, not a set of files: it has no "
                                 "manifest. Load it with cv.data.load_dataset.", field="ref")
        return self._load_artifact(version.artifact_id)

    def profile(self, ref: str | DatasetRef) -> Any:
        """The stored profile of a version (a ``conveyor.monitoring.profile.Profile``), or None."""
        from conveyor.monitoring.profile import Profile

        version = self.resolve(ref)
        if not version.profile_artifact_id:
            return None
        return Profile.from_dict(self._load_artifact(version.profile_artifact_id))

    def load(self, ref: str | DatasetRef, *, reader: Reader | None = None,
             storage_options: dict[str, Any] | None = None) -> Any:
        """The rows of a version as one Arrow table; the read is recorded against ``reader``'s run."""
        version = self.resolve(ref)
        table = self._read(version, storage_options).to_table() if version.kind == "files" else \
            self._load_artifact(version.artifact_id)
        self.note_read(version, reader)
        return table

    def _read(self, version: Any, storage_options: dict[str, Any] | None) -> Any:
        """A ``pyarrow.dataset`` over a file-set version (checked unchanged first)."""
        manifest = self._load_artifact(version.artifact_id)
        fmt = _file_format(manifest.column("path").to_pylist())
        if fmt is None:
            raise InvalidRequest(f"Dataset version {version.ref} is a set of files that are not all of one tabular "
                                 "format (Parquet, CSV, JSON lines, Arrow), so it has no rows to read. Its file list "
                                 f"is cv.data.dataset_manifest('{version.ref}').", field="ref")
        return self._file_dataset(manifest, fmt, storage_options, check=True)

    def batches(self, ref: str | DatasetRef, *, reader: Reader | None = None,
                storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
        """The rows of a version as record batches (a file set is streamed, never read whole)."""
        version = self.resolve(ref)
        self.note_read(version, reader)
        if version.kind == "files":
            yield from self._read(version, storage_options).to_batches()
        else:
            yield from self._load_artifact(version.artifact_id).to_batches()

    def note_read(self, version: Any, reader: Reader | None) -> None:
        """Record that a run read ``version`` (nothing to record outside a run)."""
        if reader is None or reader.run_id is None:
            return
        self.rows.record_read(version.dataset, version.version, run_id=reader.run_id,
                              step_run_id=reader.step_run_id, artifact_id=version.artifact_id,
                              input_name=f"dataset:{version.ref}")

    # --- aliases, listing, lineage ------------------------------------------------------------

    def set_alias(self, ref: str | DatasetRef, alias: str) -> Any:
        """Point ``alias`` at the version ``ref`` names; returns that version."""
        check_dataset_alias(alias)
        version = self.resolve(ref)
        self.rows.move_alias(version.dataset, alias, version.version, self.actor)
        return version

    def remove_alias(self, name: str, alias: str) -> None:
        """Delete an alias of a dataset."""
        check_dataset_name(name)
        if alias not in self.rows.aliases(name):
            raise NotFound(f"Dataset '{name}' has no alias '{alias}'.")
        self.rows.move_alias(name, alias, None, self.actor)

    def list(self) -> list[dict[str, Any]]:
        """Every dataset with its version count, latest version and aliases."""
        return self.rows.summary()

    def versions(self, name: str) -> list[Any]:
        """Every version of ``name``, oldest first."""
        self.resolve(name)
        return self.rows.versions(name)

    def lineage(self, ref: str | DatasetRef) -> dict[str, Any]:
        """The run that produced a version and every run that produced it again or read it."""
        version = self.resolve(ref)
        uses = self.rows.usage(version.dataset, version.version)
        return {"version": version.ref, "produced_by": {"run_id": version.run_id, "step_run_id": version.step_run_id},
                "produced": [u for u in uses if u.role == "produced"], "read": [u for u in uses if u.role == "read"]}

    def diff(self, a: str | DatasetRef, b: str | DatasetRef, *, key: str | list[str] | None = None,
             examples: int = 5) -> Any:
        """Compare two versions: schema, rows added / removed / changed (by ``key``), distributions."""
        from conveyor.data.diff import diff_tables

        va, vb = self.resolve(a), self.resolve(b)
        ignore: tuple[str, ...] = ()
        if va.kind == "files" and vb.kind == "files" and (key is None or not va.schema or not vb.schema):
            # two file sets are compared file by file: the files added, removed and changed
            ta, tb, key, ignore = self.manifest(va.ref), self.manifest(vb.ref), "path", ("fingerprint",)
        else:
            ta, tb = self.load(va.ref), self.load(vb.ref)
        return diff_tables(ta, tb, key=key, examples=examples, names=(va.ref, vb.ref), ignore=ignore,
                           profiles=(self.profile(va.ref), self.profile(vb.ref)))


# --- the functions ``cv.data`` offers --------------------------------------------------------------

_lock = threading.Lock()
_catalogs: dict[tuple[str, str, str], DatasetCatalog] = {}


def _catalog_for(metadata_url: str, artifact_root: str, actor: str) -> DatasetCatalog:
    """One catalog per store in this process (worker threads reuse it)."""
    key = (metadata_url, artifact_root, actor)
    with _lock:
        catalog = _catalogs.get(key)
        if catalog is None:
            from conveyor.runtime.worker import artifact_store
            from conveyor.store.metadata import MetadataStore

            catalog = _catalogs[key] = DatasetCatalog(MetadataStore(metadata_url), artifact_store(artifact_root, 65536),
                                                      actor)
    return catalog


def current(client: Any = None) -> tuple[DatasetCatalog, Reader]:
    """The catalog and the reading run where the caller is: a step, a tracking run, or a plain script."""
    from conveyor.runtime.context import current_step
    from conveyor.runtime.tracking import _active

    if client is None:
        step = current_step()
        if step is not None and step.metadata_url:
            return _catalog_for(step.metadata_url, step.artifact_root, step.actor), Reader(step.run_id,
                                                                                          step.step_run_id)
        run = _active.get()
        if run is not None:
            c = run.client
            return DatasetCatalog(c.metadata, c.artifacts, c.settings.actor), Reader(run.id, None)
        from conveyor.runtime.client import Client

        client = Client()
    return DatasetCatalog(client.metadata, client.artifacts, client.settings.actor), Reader()


def register_dataset(name: str, data: Any, *, alias: str | None = None, profile: bool | None = None,
                     storage_options: dict[str, Any] | None = None, algorithm: str = "sha256",
                     client: Any = None) -> Any:
    """Register ``data`` as a version of dataset ``name``; the same content gives the same version.

    ``data`` is an Arrow table, a DataFrame, a ``cv.data`` source, or a URI (folder, glob or file on
    any fsspec filesystem) of files to version by a manifest of their hashes. Inside a step the
    version is linked to that step run; inside ``cv.start_run`` to that run. ``profile=False``
    skips the column profile (the diff then shows no distribution changes). ``algorithm="blake3"``
    hashes files with BLAKE3 (the ``blake3`` extra) instead of SHA-256.
    """
    catalog, reader = current(client)
    return catalog.register(name, data, alias=alias, profile=profile, storage_options=storage_options,
                            run_id=reader.run_id, step_run_id=reader.step_run_id, algorithm=algorithm)


def load_dataset(ref: str, *, client: Any = None, storage_options: dict[str, Any] | None = None) -> Any:
    """The rows of ``customers``, ``customers:3`` or ``customers@train`` as an Arrow table.

    Inside a step (or ``cv.start_run``) the read is recorded: the version lists the run among its
    readers, and the data is an input of the step in its lineage.
    """
    catalog, reader = current(client)
    return catalog.load(ref, reader=reader, storage_options=storage_options)


def dataset_manifest(ref: str, *, client: Any = None) -> Any:
    """The manifest (path, size, fingerprint, hash) of a file-set version."""
    return current(client)[0].manifest(ref)


def diff_datasets(a: str, b: str, *, key: str | list[str] | None = None, client: Any = None) -> Any:
    """Compare two dataset versions (see ``conveyor.data.diff.DatasetDiff``)."""
    return current(client)[0].diff(a, b, key=key)


class DatasetSource:
    """A dataset version as a source: ``cv.data.open_source("dataset://customers@train")``."""

    kind = "dataset"

    def __init__(self, ref: str, *, client: Any = None, storage_options: dict[str, Any] | None = None) -> None:
        self.ref = parse_dataset_ref(ref)
        self._client = client
        self._storage_options = storage_options

    def describe(self) -> str:
        return f"dataset://{self.ref}"

    def batches(self) -> Iterator[Any]:
        catalog, reader = current(self._client)
        yield from catalog.batches(self.ref, reader=reader, storage_options=self._storage_options)

    def read(self) -> Any:
        catalog, reader = current(self._client)
        return catalog.load(self.ref, reader=reader, storage_options=self._storage_options)


def open_dataset_source(location: str | None, **options: Any) -> DatasetSource:
    """The factory the source registry calls: ``dataset://REF``, or kind ``dataset`` with ``ref=``."""
    ref = options.pop("ref", None) or location
    if not ref:
        raise InvalidRequest("A dataset source needs a reference: dataset://customers@train, or ref='customers:3'.",
                             field="ref")
    return DatasetSource(ref, **options)
