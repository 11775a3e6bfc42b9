"""Files on any fsspec URL: Parquet, CSV, JSON lines, Arrow/Feather, read through ``pyarrow.dataset``.

``FileSource("s3://bucket/events/**/*.parquet", columns=["id", "amount"], filter="amount > 10")``
lists the files once, reads only the columns asked for and pushes the filter down (Parquet row
groups whose statistics exclude it are skipped; Hive partition folders such as ``day=2024-01-31/``
become columns and prune whole folders). Rows stream as record batches, one file after the other,
so a source larger than memory can feed a step that iterates, and an error names the file.

Incremental reads remember the newest modification time seen (and the files at that instant), so
a later read lists the same place but reads only files that appeared or changed since.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conveyor.data.sources.filters import to_expression
from conveyor.errors import ConfigurationError, SourceReadError

if TYPE_CHECKING:
    import pyarrow as pa

# file suffix -> format name
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json",
            ".ndjson": "json", ".json": "json", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
FORMATS = ("parquet", "csv", "json", "arrow")
_GLOB = re.compile(r"[*?\[]")
# what pyarrow puts before the reason; the message names the file itself
_LIBRARY_PREFIX = re.compile(r"Error creating dataset\. Could not read schema from '[^']*'\. Is this a '\w+' file\?: "
                             r"|Could not open \w+ input source '[^']*': ")


def redact_url(location: str) -> str:
    """A location safe to show: no ``user:password@`` and no query string (signed URLs carry tokens there)."""
    location = re.sub(r"(://)[^/@]*@", r"\1", location)
    return location.split("?", 1)[0]


class FileSource:
    """Files under one URL (a file, a folder, or a glob) read as one table."""

    kind = "files"

    def __init__(self, location: str, *, format: str | None = None, columns: list[str] | None = None,
                 filter: Any = None, partitioning: str | None = "hive", batch_size: int = 65_536,
                 storage_options: dict[str, Any] | None = None, csv: dict[str, Any] | None = None) -> None:
        if not isinstance(location, str) or not location:
            raise ConfigurationError("A file source needs a location: a path, a folder or a glob such as "
                                     "'s3://bucket/events/*.parquet'.")
        if format is not None and format not in FORMATS:
            raise ConfigurationError(f"File format {format!r} is not supported for {redact_url(location)}. "
                                     f"Use one of: {', '.join(FORMATS)}.")
        self.location = location
        self.format = format
        self.columns = list(columns) if columns is not None else None
        self.filter = to_expression(filter, where=f"filter of {redact_url(location)}")
        self.partitioning = partitioning
        self.batch_size = int(batch_size)
        self.storage_options = dict(storage_options or {})
        self.csv_options = dict(csv or {})
        self._after: tuple[float, frozenset[str]] | None = None
        self._seen: tuple[float, set[str]] | None = None

    def describe(self) -> str:
        parts = [f"files {redact_url(self.location)}"]
        if self.format:
            parts.append(f"format={self.format}")
        if self.columns is not None:
            parts.append(f"columns={','.join(self.columns)}")
        if self.filter is not None:
            parts.append(f"filter={self.filter}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"FileSource({self.describe()!r})"

    # --- incremental --------------------------------------------------------------------------

    def resume_after(self, watermark: Any) -> None:
        """Read only files modified after ``watermark`` (``{"mtime": ..., "paths": [...]}``)."""
        if watermark is None:
            self._after = None
            return
        try:
            self._after = (float(watermark["mtime"]), frozenset(watermark.get("paths", ())))
        except (TypeError, KeyError, ValueError):
            raise ConfigurationError(f"The watermark {watermark!r} of {self.describe()} is not a file watermark "
                                     "({'mtime': seconds, 'paths': [...]}); reset it.") from None

    def watermark(self) -> Any:
        """The newest modification time among the files read, and those files."""
        if self._seen is None:
            return None if self._after is None else {"mtime": self._after[0], "paths": sorted(self._after[1])}
        return {"mtime": self._seen[0], "paths": sorted(self._seen[1])}

    # --- reading ------------------------------------------------------------------------------

    def batches(self) -> Iterator[pa.RecordBatch]:
        dataset, fresh = self._dataset()
        if fresh:
            yield from self._scan(dataset)

    def _scan(self, dataset: Any) -> Iterator[pa.RecordBatch]:
        for fragment in dataset.get_fragments(filter=self.filter):
            path = fragment.path
            try:
                yield from fragment.to_batches(schema=dataset.schema, columns=self.columns, filter=self.filter,
                                               batch_size=self.batch_size)
            except Exception as exc:
                raise self._read_error(path, exc) from None

    def read(self) -> pa.Table:
        import pyarrow as pa

        dataset, fresh = self._dataset()
        schema = dataset.schema
        if self.columns is not None:
            schema = pa.schema([schema.field(c) for c in self.columns])
        batches = list(self._scan(dataset)) if fresh else []   # one listing, not two
        return pa.Table.from_batches(batches, schema=schema)

    def files(self) -> list[str]:
        """The files this source would read now (after the watermark, if any), in order."""
        return [path for path, _ in self._listing()[2]]

    def _filesystem(self) -> tuple[Any, str]:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(self.location, **self.storage_options)
        except (ImportError, ValueError) as exc:
            scheme = self.location.split("://", 1)[0]
            raise ConfigurationError(f"Cannot open {redact_url(self.location)}: {exc}. Install the filesystem for "
                                     f"'{scheme}://' (pip install 'conveyor[{_extra(scheme)}]').") from None
        return fs, path

    def _listing(self) -> tuple[Any, list[tuple[str, float]], list[tuple[str, float]], str]:
        """The filesystem, every data file, those after the watermark, and the partitions' base folder."""
        fs, path = self._filesystem()
        try:
            if _GLOB.search(path):
                found = fs.glob(path, detail=True)
                base = _GLOB.split(path, 1)[0].rsplit("/", 1)[0]
            elif fs.isdir(path):
                found, base = fs.find(path, detail=True), path.rstrip("/")
            else:
                found, base = {path: fs.info(path)}, path.rsplit("/", 1)[0]
        except FileNotFoundError:
            raise SourceReadError(f"Data source {self.describe()}: {redact_url(self.location)} does not exist. "
                                  "Check the path (and the bucket or container name).") from None
        except Exception as exc:
            raise SourceReadError(f"Data source {self.describe()}: listing {redact_url(self.location)} failed: "
                                  f"{type(exc).__name__}: {exc}. Check the URL and the credentials.") from None
        files = sorted((p, _modified(info)) for p, info in found.items()
                       if info.get("type", "file") != "directory" and not _hidden(p[len(base):])
                       and (self.format is not None or _format_of(p) is not None))
        fresh = files
        if self._after is not None:
            mtime, paths = self._after
            fresh = [(p, m) for p, m in files if m > mtime or (m == mtime and p not in paths)]
        return fs, files, fresh, base

    def _dataset(self) -> tuple[Any, bool]:
        """The dataset of the files to read, and whether there are any: with nothing new since the
        watermark, a dataset of the newest file gives the schema of the (empty) result."""
        import pyarrow.dataset as ds

        fs, every, files, base = self._listing()
        fresh = bool(files)
        if not files and every:
            files = [max(every, key=lambda f: (f[1], f[0]))]
        if not files:
            raise SourceReadError(f"Data source {self.describe()}: no data files found. Check the path or glob, "
                                  f"or name the format (format='parquet'); recognised suffixes: "
                                  f"{', '.join(sorted(SUFFIXES))}.")
        fmt = self.format or _format_of(files[0][0])
        others = {_format_of(p) for p, _ in files} - {fmt}
        if self.format is None and others:
            raise ConfigurationError(f"Data source {self.describe()} mixes formats ({fmt} and "
                                     f"{', '.join(sorted(str(o) for o in others))}). Narrow the glob or pass format=.")
        filesystem = _arrow_filesystem(fs)
        partitioning = ds.partitioning(flavor="hive") if self.partitioning == "hive" else self.partitioning
        try:
            dataset = ds.dataset([p for p, _ in files], filesystem=filesystem, format=_file_format(fmt, self.csv_options),
                                 partitioning=partitioning, partition_base_dir=base)
        except Exception as exc:
            raise self._read_error(_culprit(exc, [p for p, _ in files]), exc) from None
        if self.columns is not None:
            missing = [c for c in self.columns if c not in dataset.schema.names]
            if missing:
                raise ConfigurationError(f"Data source {self.describe()} has no column {', '.join(map(repr, missing))}. "
                                         f"Its columns are: {', '.join(dataset.schema.names)}.")
        if fresh:
            newest = max(m for _, m in files)
            self._seen = (newest, {p for p, m in files if m == newest})
        return dataset, fresh

    def _read_error(self, path: str | None, exc: Exception) -> SourceReadError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = _LIBRARY_PREFIX.sub("", text).removeprefix("Invalid: ").rstrip(".")
        where = f"file {path}" if path else redact_url(self.location)
        row = re.search(r"[Rr]ow #?(\d+)", text)
        at = f", line {row.group(1)}" if row else ""   # pyarrow counts the header as row 1, so it is the line
        if "magic bytes" in text or "footer" in text or "Parquet file size" in text:
            fix = "The file is truncated or not Parquet: write it again, or remove it from the folder."
        elif "CSV" in text or "columns" in text:
            fix = "Fix that row (a ragged row has more or fewer fields than the header), or pass csv={'invalid_row': 'skip'}."
        elif "JSON" in text:
            fix = "Each line must be one JSON object (JSON lines); fix or remove that line."
        else:
            fix = "Check that the file is complete and in the expected format."
        return SourceReadError(f"Data source {self.describe()}: cannot read {where}{at}: {text}. {fix}")


def open_files(location: str | None, **options: Any) -> FileSource:
    """The registry's factory for ``files``: a location string and the options of :class:`FileSource`."""
    if location is None:
        location = options.pop("path", None) or options.pop("url", None)
    return FileSource(location, **options)  # type: ignore[arg-type]


def _file_format(fmt: str, csv_options: dict[str, Any]) -> Any:
    import pyarrow.csv as pcsv
    import pyarrow.dataset as ds

    if fmt == "parquet":
        return ds.ParquetFileFormat()
    if fmt == "arrow":
        return ds.IpcFileFormat()
    if fmt == "json":
        return ds.JsonFileFormat()
    options = dict(csv_options)
    invalid = options.pop("invalid_row", None)
    delimiter = options.pop("delimiter", None)
    parse = pcsv.ParseOptions(delimiter=delimiter or ",",
                              invalid_row_handler=(lambda row: "skip") if invalid == "skip" else None)
    convert = pcsv.ConvertOptions(**options) if options else None
    return ds.CsvFileFormat(parse_options=parse, convert_options=convert)


def _arrow_filesystem(fs: Any) -> Any:
    """pyarrow's own local filesystem for local files (faster); fsspec's, wrapped, for the rest."""
    import pyarrow.fs as pafs

    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _format_of(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix) or name.endswith(suffix + ".gz"):
            return fmt
    return None


def _hidden(relative: str) -> bool:
    # _SUCCESS, _metadata, .crc files and hidden folders are bookkeeping of the writers, not data
    return any(part.startswith((".", "_")) for part in relative.strip("/").split("/") if "=" not in part)


def _modified(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "mtime_ns"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, _dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return float(value) / (1e9 if key == "mtime_ns" else 1)
    return 0.0


def _culprit(exc: Exception, paths: list[str]) -> str | None:
    text = str(exc)
    return next((p for p in paths if p in text), None)


def _extra(scheme: str) -> str:
    return {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}.get(scheme, scheme)


__all__ = ["FORMATS", "FileSource", "open_files", "redact_url"]
