"""pyarrow Tables as an Arrow IPC stream."""

from __future__ import annotations

from typing import Any, BinaryIO


class ArrowTableMaterializer:
    name = "arrow.ipc"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        import pyarrow as pa

        with pa.ipc.new_stream(pa.PythonFile(out, mode="w"), value.schema) as writer:
            writer.write_table(value, max_chunksize=1 << 20)
        meta = {"shape": [value.num_rows, value.num_columns], "columns": value.column_names[:50]}
        source = (value.schema.metadata or {}).get(b"conveyor.source")
        if source:   # set by a data source's read step: the lineage names where the rows came from
            meta["source"] = source.decode(errors="replace")[:1000]
        return meta

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import pyarrow as pa

        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
