"""Where monitoring reads from: the prediction log, files, the registry's stored profiles, late labels."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest, NotFound
from conveyor.monitoring.profile import PREDICTION, Profile

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_window(text: str) -> dt.timedelta:
    """``90s``, ``15m``, ``24h``, ``7d``, ``2w`` → a timedelta."""
    m = _WINDOW.match(str(text))
    if not m:
        raise InvalidRequest(f"Window {text!r} is not a duration like 15m, 24h or 7d.", field="window")
    return dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def read_table(uri: str, storage_options: dict[str, Any] | None = None) -> Any:
    """A Parquet or CSV file (or a folder of Parquet files) on any fsspec filesystem, as an Arrow table."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if not fs.exists(path):
        raise NotFound(f"No file or folder at {uri}.")
    if fs.isdir(path):
        import pyarrow.dataset as ds      # a third of a second to import: only for folders

        return ds.dataset(path, filesystem=fs, format="parquet").to_table()
    if path.endswith((".csv", ".csv.gz", ".txt")):
        import pyarrow.csv as pcsv

        with fs.open(path, "rb") as fh:
            return pcsv.read_csv(fh)
    import pyarrow.parquet as pq

    if fs.protocol in ("file", "local") or "file" in (fs.protocol or ()):
        return pq.read_table(path, memory_map=True)   # Arrow's own threaded reader, no Python file object
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh)


def log_window(artifact_root: str, endpoint: str, window: dt.timedelta | None,
               until: dt.datetime | None = None) -> Any:
    """An endpoint's logged (non-shadow) predictions in a window ending ``until`` (default: now)."""
    import pyarrow.compute as pc

    from conveyor.serving.prediction_log import read_prediction_log

    until = until or dt.datetime.now(dt.UTC)
    since = until - window if window is not None else None
    table = read_prediction_log(artifact_root, endpoint, since=since, until=until)
    if table.num_rows == 0:
        return table
    return table.filter(pc.invert(table.column("shadow")))


def features_of(log: Any) -> Any:
    """Feature and prediction columns of logged rows, named as the model's inputs."""
    import pyarrow as pa

    cols = {name[len("feature."):]: log.column(name) for name in log.column_names if name.startswith("feature.")}
    if "prediction" in log.column_names:
        cols[PREDICTION] = log.column("prediction")
    elif "prediction_text" in log.column_names:
        cols[PREDICTION] = log.column("prediction_text")
    return pa.table(cols)


def served_version(log: Any) -> tuple[str, int] | None:
    """The (model, version) that answered most of the logged rows."""
    if log.num_rows == 0:
        return None
    import pyarrow.compute as pc

    pairs = pc.value_counts(pc.binary_join_element_wise(log.column("model"),
                                                        pc.cast(log.column("version"), "string"), ":"))
    values = pairs.field("values").to_pylist()
    counts = pairs.field("counts").to_numpy()
    name, _, version = values[int(np.argmax(counts))].rpartition(":")
    return name, int(version)


def looks_like_uri(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".parquet", ".csv", ".pq")) or "://" in text


def reference_profile(client: Any, reference: str) -> tuple[Profile, str]:
    """A stored profile (``name:version`` / ``name@alias``) or a profile of a file; and a label for it."""
    if looks_like_uri(reference):
        table = read_table(reference)
        return Profile.from_data(table), reference
    version = client.registry.resolve(reference)
    profile = client.registry.profile(f"{version.model}:{version.version}")
    if profile is None:
        raise NotFound(f"Model {version.model}:{version.version} has no reference profile: register it with "
                       "data=<training frame> (cv.register_model(..., data=X)) or pass --reference FILE.")
    return profile, f"{version.model}:{version.version}"


# --- labels that arrive late --------------------------------------------------------------------

def ingest_labels(artifact_root: str, data: Any, *, id_column: str = "request_id", label_column: str = "label",
                  endpoint: str | None = None) -> int:
    """Store ground-truth labels (keyed by request id, optionally ``row``) next to the prediction log."""
    import fsspec
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from conveyor.monitoring.profile import to_arrow

    table = to_arrow(data) if not isinstance(data, str) else read_table(data)
    for col in (id_column, label_column):
        if col not in table.column_names:
            raise InvalidRequest(f"The labels have no column '{col}'. Columns: {', '.join(table.column_names)}. "
                                 f"Name them with --id-column / --label-column.", field=col)
    n = table.num_rows
    out = {"request_id": pc.cast(table.column(id_column), pa.string()),
           "row": table.column("row").cast(pa.int32()) if "row" in table.column_names
           else pa.array(np.zeros(n, dtype=np.int32)),
           "label": table.column(label_column),
           "ingested_at": pa.array(np.full(n, int(dt.datetime.now(dt.UTC).timestamp() * 1e6), dtype=np.int64)).cast(
               pa.timestamp("us", tz="UTC"))}
    fs, base = fsspec.core.url_to_fs(artifact_root)
    folder = f"{base.rstrip('/')}/labels/endpoint={endpoint or '_all'}"
    fs.makedirs(folder, exist_ok=True)
    tmp = f"{folder}/.{uuid.uuid4().hex}.tmp"
    with fs.open(tmp, "wb") as fh:
        pq.write_table(pa.table(out), fh)
    fs.mv(tmp, f"{folder}/{uuid.uuid4().hex}.parquet")
    return n


def read_labels(artifact_root: str, endpoint: str | None = None) -> Any:
    """All labels ingested for an endpoint (and those ingested for every endpoint); the newest wins."""
    import fsspec
    import pyarrow as pa
    import pyarrow.dataset as ds

    fs, base = fsspec.core.url_to_fs(artifact_root)
    tables = []
    for part in (f"endpoint={endpoint}" if endpoint else None, "endpoint=_all"):
        if part is None:
            continue
        folder = f"{base.rstrip('/')}/labels/{part}"
        if fs.exists(folder):
            files = [f for f in fs.find(folder) if f.endswith(".parquet")]
            if files:
                tables.append(ds.dataset(files, filesystem=fs, format="parquet").to_table())
    if not tables:
        return pa.table({"request_id": pa.array([], pa.string()), "row": pa.array([], pa.int32()),
                         "label": pa.array([], pa.float64())})
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.sort_by([("ingested_at", "descending")])
    # keep the newest label per (request_id, row)
    frame = table.select(["request_id", "row", "label"]).to_pandas().drop_duplicates(["request_id", "row"])
    return pa.Table.from_pandas(frame, preserve_index=False)
